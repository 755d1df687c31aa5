"""Console sessions: an admin key given once, then a signed cookie, and a CSRF token.

The cookie (`redeem_console`, HttpOnly, SameSite=Strict, path /console) holds the key's
digest, never the key, and the session's CSRF token, signed with the intake's
`console_secret` and dated: it lasts `console_session_s`. Every request reads the key's
grant again from `REDEEM_API_KEYS`, so a key taken out of them ends its sessions. Every
form posts the token (`csrf`), every script request sends it (`X-CSRF-Token`); the
sign-in form, before any session, checks its own token against a cookie of its own.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from services.intake.auth import admit
from shared.domain.access import DIGEST_PREFIX, ApiKeys, Grant, digest_of
from shared.domain.reasons import DomainError, ReasonCode

COOKIE = "redeem_console"
SIGN_IN_COOKIE = "redeem_console_sign_in"
PATH = "/console"
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
_SIGN_IN_S = 3600  # how long a sign-in form stays good


class SignedOut(Exception):
    """No valid session: the caller signs in again."""


class CsrfRefused(Exception):
    """A post without its session's token: perhaps another site's."""


@dataclass(frozen=True)
class Session:
    """A signed-in operator: who (`key:<id>`, as the API names callers), what the key
    reaches now, and the token its forms carry."""

    who: str
    grant: Grant
    csrf: str


class Sessions:
    """Opens, reads and ends console sessions."""

    def __init__(self, keys: ApiKeys, secret: str, max_age_s: float) -> None:
        self._keys = keys
        self._max_age_s = max_age_s
        self._sessions = URLSafeTimedSerializer(secret, salt="redeem-console-session")
        self._sign_ins = URLSafeTimedSerializer(secret, salt="redeem-console-sign-in")

    def open(self, key: str, response: Response, request: Request) -> None:
        """Sign in with `key`, if it holds the admin role (else the DomainError says why)."""
        admit(self._keys, "Bearer " + key, "admin")
        value = self._sessions.dumps({"k": digest_of(key), "c": secrets.token_urlsafe(32)})
        _set(response, request, COOKIE, value, int(self._max_age_s))
        response.delete_cookie(SIGN_IN_COOKIE, path=PATH)

    def read(self, request: Request) -> Session:
        """The request's session, or SignedOut."""
        value = request.cookies.get(COOKIE)
        if not value:
            raise SignedOut
        try:
            data = self._sessions.loads(value, max_age=int(self._max_age_s))
        except BadSignature:
            raise SignedOut from None
        digest, csrf = data.get("k"), data.get("c")
        if not isinstance(digest, str) or not isinstance(csrf, str):
            raise SignedOut
        grant = self._keys.grant_of_digest(digest)
        if grant is None or not grant.holds("admin"):
            raise SignedOut
        return Session("key:" + digest.removeprefix(DIGEST_PREFIX)[:8], grant, csrf)

    @staticmethod
    def end(response: Response) -> None:
        response.delete_cookie(COOKIE, path=PATH)

    def sign_in_token(self, request: Request) -> str:
        """The sign-in form's token: the one its cookie keeps, if still good, else a new
        one (`keep_sign_in` sets the cookie)."""
        token = request.cookies.get(SIGN_IN_COOKIE)
        if token:
            try:
                self._sign_ins.loads(token, max_age=_SIGN_IN_S)
                return token
            except BadSignature:
                pass
        return self._sign_ins.dumps(secrets.token_urlsafe(16))

    @staticmethod
    def keep_sign_in(token: str, response: Response, request: Request) -> None:
        _set(response, request, SIGN_IN_COOKIE, token, _SIGN_IN_S)

    def check_sign_in(self, request: Request, posted: str) -> None:
        kept = request.cookies.get(SIGN_IN_COOKIE, "")
        if not kept or not secrets.compare_digest(kept, posted):
            raise CsrfRefused
        try:
            self._sign_ins.loads(kept, max_age=_SIGN_IN_S)
        except BadSignature:
            raise CsrfRefused from None


def check_csrf(session: Session, posted: str | None) -> None:
    """Refuse a post whose token is not its session's."""
    if not posted or not secrets.compare_digest(session.csrf, posted):
        raise CsrfRefused


def _set(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def refused_key(error: DomainError) -> str:
    """What the sign-in form says of a refused key."""
    if error.reason is ReasonCode.FORBIDDEN:
        return f"{int(error.reason)} {error.reason.name}: this key does not hold the admin role"
    return f"{int(error.reason)} {error.reason.name}: no such key"
