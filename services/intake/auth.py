"""Bearer API keys, each holding roles: `redeem`, `fulfillment`, `admin` (admin holds all).

A route states the role it requires as a dependency (`requires`); `CredentialsFirst`
checks that same role before anything reads the request's body, so a caller without
it is refused without sending a byte of the body to be read.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.intake.errors import Refusal
from shared.domain.reasons import DomainError, ReasonCode

ROLES = frozenset({"redeem", "fulfillment", "admin"})


class Keys:
    def __init__(self, roles_by_key: Mapping[str, frozenset[str]]) -> None:
        unknown = {role for roles in roles_by_key.values() for role in roles} - ROLES
        if unknown:
            raise ValueError(f"unknown roles in REDEEM_API_KEYS: {sorted(unknown)}")
        self._keys = [(key.encode(), roles) for key, roles in roles_by_key.items()]

    def roles(self, key: str) -> frozenset[str] | None:
        given = key.encode()
        found = None
        for candidate, roles in self._keys:  # compare with every key: constant time
            if hmac.compare_digest(candidate, given):
                found = roles
        return found


def admit(keys: Keys, authorization: str, role: str) -> str:
    """Who the caller is, if its `Authorization` header names a key holding `role`."""
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    roles = keys.roles(key) if scheme.lower() == "bearer" and key else None
    if roles is None:
        raise DomainError(
            ReasonCode.UNAUTHENTICATED, "a valid 'Authorization: Bearer <key>' is required"
        )
    if role not in roles and "admin" not in roles:
        raise DomainError(ReasonCode.FORBIDDEN, f"this key does not hold the '{role}' role")
    return "key:" + key_id(key)


def key_id(key: str) -> str:
    """An API key's public name: a prefix of its digest, never the key itself."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def key_id_of(who: str) -> str:
    """The key id in a caller's name as `admit` gives it (`key:<id>`)."""
    return who.removeprefix("key:")


class Requires:
    """A dependency admitting callers whose key holds `role`; yields who they are."""

    def __init__(self, role: str) -> None:
        self.role = role

    async def __call__(self, request: Request) -> str:
        keys: Keys = request.app.state.keys
        return admit(keys, request.headers.get("authorization", ""), self.role)


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
    try:
        admit(scope["app"].state.keys, Headers(scope=scope).get("authorization", ""), role)
    except DomainError as refused:
        raise Refusal(refused) from None


def _role_in(dependant: Dependant) -> str | None:
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, Requires):
            return dependency.call.role
        if (role := _role_in(dependency)) is not None:
            return role
    return None
