"""Bearer API keys, each holding roles: `redeem`, `fulfillment`, `admin` (admin holds all)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping

from fastapi import Request

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


def requires(role: str) -> Callable[[Request], Awaitable[str]]:
    """A dependency admitting callers whose key holds `role`; yields who they are."""

    async def check(request: Request) -> str:
        keys: Keys = request.app.state.keys
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        roles = keys.roles(key.strip()) if scheme.lower() == "bearer" and key else None
        if roles is None:
            raise DomainError(
                ReasonCode.UNAUTHENTICATED, "a valid 'Authorization: Bearer <key>' is required"
            )
        if role not in roles and "admin" not in roles:
            raise DomainError(ReasonCode.FORBIDDEN, f"this key does not hold the '{role}' role")
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:8]

    return check
