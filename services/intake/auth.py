"""Bearer API keys, each holding roles: `redeem`, `fulfillment`, `admin` (admin holds all),
and perhaps limited to campaigns and handlers (`shared/domain/access.py`).

A route states the role it requires as a dependency (`requires`), which also refuses
a campaign the request names (`codeType` in its path or query) out of the key's reach;
`CredentialsFirst` checks both before anything reads the request's body, so a caller
refused is refused without sending a byte of the body to be read. A route that lists
or looks up records of several campaigns takes the key's `Grant` (`grant_of`) and
leaves out what is out of its reach. AMQP commands name their key in an
`authorization` header (`admit_message`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.datastructures import Headers, QueryParams
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.intake.errors import Refusal
from shared import topology
from shared.domain.access import DIGEST_PREFIX, ApiKeys, Grant
from shared.domain.reasons import DomainError, ReasonCode


@dataclass(frozen=True)
class Admitted:
    """A caller let in: who it is (`key:<id>`) and what its key may reach."""

    who: str
    grant: Grant


def admit(keys: ApiKeys, authorization: str, role: str) -> Admitted:
    """The caller, if its `Authorization` header names a key holding `role`."""
    key, grant = _grant(keys, authorization)
    if not grant.holds(role):
        raise DomainError(ReasonCode.FORBIDDEN, f"this key does not hold the '{role}' role")
    return Admitted("key:" + key_id(key), grant)


def _grant(keys: ApiKeys, authorization: str) -> tuple[str, Grant]:
    """The bearer key an `Authorization` header names, and its grant."""
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    grant = keys.grant(key) if scheme.lower() == "bearer" and key else None
    if grant is None:
        raise DomainError(
            ReasonCode.UNAUTHENTICATED, "a valid 'Authorization: Bearer <key>' is required"
        )
    return key, grant


def admit_message(keys: ApiKeys, headers: Mapping[str, Any], role: str) -> Admitted:
    """An AMQP command's sender, if its `authorization` header names a key holding `role`;
    a delayed copy of a command names its key by the key's digest instead."""
    if topology.AUTHORIZATION_HEADER not in headers and topology.KEY_DIGEST_HEADER in headers:
        return _admit_digest(keys, _header_text(headers[topology.KEY_DIGEST_HEADER]), role)
    return admit(keys, _header_text(headers.get(topology.AUTHORIZATION_HEADER, "")), role)


def names_key(headers: Mapping[str, Any]) -> bool:
    """Whether an AMQP command names a key, itself or (a delayed copy) by its digest."""
    return topology.AUTHORIZATION_HEADER in headers or topology.KEY_DIGEST_HEADER in headers


def _admit_digest(keys: ApiKeys, written: str, role: str) -> Admitted:
    grant = keys.grant_of_digest(written)
    if grant is None:
        raise DomainError(ReasonCode.UNAUTHENTICATED, "the key of this command is no longer valid")
    if not grant.holds(role):
        raise DomainError(ReasonCode.FORBIDDEN, f"this key does not hold the '{role}' role")
    return Admitted("key:" + written.removeprefix(DIGEST_PREFIX)[:8], grant)


def _header_text(value: object) -> str:
    """An AMQP header's text. The client hands over a string that is not UTF-8 as bytes,
    and a sender may put any type there: neither names a key."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            pass
    elif isinstance(value, str):
        return value
    raise DomainError(
        ReasonCode.UNAUTHENTICATED, "the 'authorization' header must be 'Bearer <key>' text"
    )


def check_named_campaign(
    grant: Grant, path_params: Mapping[str, Any], query_params: Mapping[str, Any]
) -> None:
    """Refuse a request naming a campaign (`codeType` in its path or its query) out of the
    key's reach, before anything is looked at."""
    named = path_params.get("codeType") or query_params.get("codeType")
    if named is not None:
        grant.check_campaign(str(named))


def key_id(key: str) -> str:
    """An API key's public name: a prefix of its digest, never the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def key_id_of(who: str) -> str:
    """The key id in a caller's name as `admit` gives it (`key:<id>`)."""
    return who.removeprefix("key:")


class Requires:
    """A dependency admitting callers whose key holds `role` and reaches the campaign the
    request names, if any; yields who they are."""

    def __init__(self, role: str) -> None:
        self.role = role

    async def __call__(self, request: Request) -> str:
        keys: ApiKeys = request.app.state.keys
        admitted = admit(keys, request.headers.get("authorization", ""), self.role)
        check_named_campaign(admitted.grant, request.path_params, request.query_params)
        return admitted.who


async def grant_of(request: Request) -> Grant:
    """What the caller's key may reach (the route's `requires` checks its role)."""
    keys: ApiKeys = request.app.state.keys
    return _grant(keys, request.headers.get("authorization", ""))[1]


def requires(role: str) -> Requires:
    return Requires(role)


class CredentialsFirst:
    """Check the caller's key against the role of the route that took the request when
    its body is first read, and refuse before a byte of it is.

    FastAPI reads a route's body before it solves the route's dependencies, so the
    `requires` dependency alone would refuse a caller only after reading its body.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        admitted = False

        async def receive_admitted() -> Message:
            nonlocal admitted
            if not admitted:
                _admit_to_route(scope)
                admitted = True
            return await receive()

        await self.app(scope, receive_admitted, send)


def _admit_to_route(scope: Scope) -> None:
    """Refuse a caller without the role of the route that took the request (scope["route"])."""
    route = scope.get("route")
    role = _role_in(route.dependant) if isinstance(route, APIRoute) else None
    if role is None:
        return
    headers, query = Headers(scope=scope), QueryParams(scope.get("query_string", b""))
    try:
        admitted = admit(scope["app"].state.keys, headers.get("authorization", ""), role)
        check_named_campaign(admitted.grant, scope.get("path_params", {}), query)
    except DomainError as refused:
        raise Refusal(refused) from None


def _role_in(dependant: Dependant) -> str | None:
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, Requires):
            return dependency.call.role
        if (role := _role_in(dependency)) is not None:
            return role
    return None
