"""The brainCloud front door's rules: apps and servers and their secrets, profiles and
how they authenticate, sessions and their expiry, packet signatures.

A game client speaks for a *profile* of an *app*: it authenticates with an identity
(an anonymous id, or a universal user id and password), gets a session, and sends
signed packets in it; the profile's id is the user id of its redemptions. A game
server authenticates by server name and secret and acts for any profile.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.domain.access import ROLES, Grant, limited, written_digest
from shared.domain.reasons import DomainError, ReasonCode

# scrypt's cost (RFC 7914), OWASP's minimum: 2**17 blocks of 128 * 8 bytes, 128 MiB a hash.
_SCRYPT = {"n": 2**17, "r": 8, "p": 1}
_SCRYPT_MAXMEM = 256 * 1024 * 1024


class IdentityKind(StrEnum):
    ANONYMOUS = "Anonymous"
    UNIVERSAL = "Universal"


@dataclass(frozen=True)
class Profile:
    """A game client's user: one identity of one app. `secret_hash` is the universal
    password's hash (`hash_password`); an anonymous identity has none."""

    profile_id: str
    app_id: str
    kind: IdentityKind
    external_id: str
    created_at: datetime
    secret_hash: str | None = None


@dataclass(frozen=True)
class Session:
    """A client's session (for a profile) or a server's (for a server name), alive until
    `expires_at`; every packet in it moves that on. The answer to its last packet is
    kept, so that a packet sent again is answered again and not carried out twice."""

    session_id: str
    app_id: str
    expires_at: datetime
    profile_id: str | None = None
    server_name: str | None = None
    last_packet_id: int | None = None
    last_answer: str | None = None

    def check_alive(self, now: datetime) -> None:
        """Refuse a session past its expiry: 40303 for a client's, 40365 for a server's."""
        if now < self.expires_at:
            return
        if self.server_name is not None:
            raise DomainError(ReasonCode.SERVER_SESSION_EXPIRED, "the server session expired")
        raise DomainError(ReasonCode.PLAYER_SESSION_EXPIRED, "the session expired")

    def replay(self, packet_id: int) -> str | None:
        """The answer kept for `packet_id`, if it is the last packet answered."""
        return self.last_answer if packet_id == self.last_packet_id else None


def new_session_id() -> str:
    return secrets.token_urlsafe(24)


def expiry(now: datetime, seconds: int) -> datetime:
    return now + timedelta(seconds=seconds)


def hash_password(password: str) -> str:
    """`scrypt$<salt hex>$<hash hex>`: scrypt, memory-hard, with a salt of its own."""
    salt = secrets.token_bytes(16)
    return f"scrypt${salt.hex()}${_scrypt(password, salt).hex()}"


def password_matches(password: str, stored: str) -> bool:
    scheme, salt, digest = [*stored.split("$"), "", ""][:3]
    if scheme != "scrypt":
        return False
    return hmac.compare_digest(_scrypt(password, bytes.fromhex(salt)).hex(), digest)


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(_utf8(password), salt=salt, maxmem=_SCRYPT_MAXMEM, **_SCRYPT)


def _utf8(text: str) -> bytes:
    """A caller's text as bytes, a lone surrogate (which JSON may carry) included."""
    return text.encode("utf-8", "surrogatepass")


def signature_matches(body: bytes, secret: str, given: str) -> bool:
    """`X-SIG`: the hex MD5 of the body's bytes as received followed by the app's secret
    (the clients send it in either case)."""
    expected = hashlib.md5(body + secret.encode(), usedforsecurity=False).hexdigest()
    return hmac.compare_digest(expected.encode(), _utf8(given.strip().lower()))


@dataclass(frozen=True)
class App:
    """An app whose clients may connect: its id, its secret (which signs each packet),
    and the campaigns its clients reach."""

    app_id: str
    secret: str
    grant: Grant


class Apps:
    """`REDEEM_BRAINCLOUD_APPS`: `APPID=SECRET[|campaigns=A,B];...`. The secret signs
    packets, so it is kept as given, not as a digest. A client of an app redeems and
    reads its own redemptions, in the campaigns the app is limited to (all if none)."""

    def __init__(self, apps: dict[str, App]) -> None:
        self._apps = apps

    @classmethod
    def parse(cls, spec: str) -> Apps:
        setting = "REDEEM_BRAINCLOUD_APPS"
        apps = {
            app_id: App(app_id, secret, limited(Grant(frozenset({"redeem"})), limits, setting))
            for app_id, secret, limits in _entries(spec, setting, "APPID=SECRET[|campaigns=...]")
        }
        return cls(apps)

    def get(self, app_id: str) -> App:
        """The app, or 40316 when none has that id."""
        app = self._apps.get(app_id)
        if app is None:
            raise DomainError(ReasonCode.INVALID_GAME_ID, f"no app {app_id!r} is configured")
        return app

    def __bool__(self) -> bool:
        return bool(self._apps)


@dataclass(frozen=True)
class Server:
    name: str
    digest: bytes
    grant: Grant


class Servers:
    """`REDEEM_BRAINCLOUD_SERVERS`: `NAME=SECRET[|campaigns=A,B][|handlers=H]...;...`,
    SECRET the secret or `sha256:<hex>`, its digest, as API keys are written. A server
    acts for any profile, as an admin and fulfillment key would, within its limits."""

    def __init__(self, servers: dict[str, Server]) -> None:
        self._servers = servers

    @classmethod
    def parse(cls, spec: str) -> Servers:
        setting = "REDEEM_BRAINCLOUD_SERVERS"
        servers = {
            name: Server(
                name, written_digest(secret, setting), limited(Grant(ROLES), limits, setting)
            )
            for name, secret, limits in _entries(spec, setting, "NAME=SECRET[|campaigns=...]")
        }
        return cls(servers)

    def admit(self, name: str, secret: str) -> Server:
        """The server, if `secret` is its secret; else 40307 (the same for an unknown
        name, in the same time)."""
        given = hashlib.sha256(_utf8(secret)).digest()
        found = self._servers.get(name)
        expected = found.digest if found else hashlib.sha256(b"\0" + given).digest()
        if not hmac.compare_digest(expected, given) or found is None:
            raise DomainError(
                ReasonCode.TOKEN_DOES_NOT_MATCH_USER, "unknown server name or wrong secret"
            )
        return found

    def get(self, name: str) -> Server | None:
        return self._servers.get(name)


def _entries(spec: str, setting: str, form: str) -> Iterator[tuple[str, str, list[str]]]:
    """Each `NAME=SECRET|LIMIT|...` entry of `spec` (`;`-separated): its name, its
    secret and its limits; ValueError for an entry without a name or a secret."""
    for entry in filter(None, (part.strip() for part in spec.split(";"))):
        name, _, rest = entry.partition("=")
        secret, *limits = rest.split("|")
        if not name.strip() or not secret.strip():
            raise ValueError(f"{setting}: an entry is {form}")
        yield name.strip(), secret.strip(), limits
