"""API keys and what each may reach: roles, and optionally only some campaigns and handlers.

`REDEEM_API_KEYS` is `ENTRY;ENTRY;...`, each entry

    KEY=ROLE,ROLE[|campaigns=CODETYPE,CODETYPE][|handlers=HANDLER,HANDLER]

KEY is the key itself or `sha256:<64 hex digits>`, the SHA-256 digest of its UTF-8
bytes, so that the key itself need not sit in the environment. Roles: `redeem`,
`fulfillment`, `admin` (admin holds them all). A key limited to campaigns reaches
only those: it redeems, reads and changes nothing of another campaign. A key limited
to handlers answers (`ProcessAsynchronousResponse`) only the attempts of campaigns
whose handler is one of them. Without a limit a key reaches everything, as before
limits existed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from dataclasses import dataclass

from shared.domain.campaigns import Campaign
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.throttling import ScopeKind, kind_of, scope_of

ROLES = frozenset({"redeem", "fulfillment", "admin"})
DIGEST_PREFIX = "sha256:"
LIMITS = ("campaigns", "handlers")
_HEX = frozenset("0123456789abcdef")


def digest_of(key: str) -> str:
    """How a key is written as a digest in `REDEEM_API_KEYS`: `sha256:<hex>`."""
    return DIGEST_PREFIX + hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Grant:
    """What one key may do: its roles, and the campaigns and handlers it is limited to
    (None: not limited)."""

    roles: frozenset[str]
    campaigns: frozenset[str] | None = None
    handlers: frozenset[str] | None = None

    def holds(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles

    def reaches(self, code_type: str | None) -> bool:
        """Whether the key reaches the campaign (one not named only an unlimited key does)."""
        return self.campaigns is None or code_type in self.campaigns

    def check_campaign(self, code_type: str | None) -> None:
        """Refuse (90403) a campaign out of this key's reach."""
        if self.reaches(code_type):
            return
        if code_type is None:
            raise DomainError(
                ReasonCode.FORBIDDEN, "this key is limited to campaigns: name the codeType"
            )
        raise DomainError(ReasonCode.FORBIDDEN, f"this key does not reach campaign {code_type}")

    def check_answer(self, campaign: Campaign) -> None:
        """Refuse (90403) an async response for an attempt of a campaign out of reach, or
        whose handler is not one this key answers for."""
        self.check_campaign(campaign.code_type)
        if self.handlers is not None and campaign.handler not in self.handlers:
            raise DomainError(
                ReasonCode.FORBIDDEN, "this key does not answer for this attempt's handler"
            )

    def lockout_scopes(self) -> list[str] | None:
        """The lockouts within reach, by scope: those of the key's campaigns (a user's,
        a key's or an address's spans every campaign); None: every one."""
        if self.campaigns is None:
            return None
        return sorted(scope_of(ScopeKind.CAMPAIGN, name) for name in self.campaigns)

    def check_lockout(self, scope: str) -> None:
        """Refuse (90403) a lockout out of reach (see `lockout_scopes`)."""
        kind_of(scope)
        reachable = self.lockout_scopes()
        if reachable is not None and scope not in reachable:
            raise DomainError(ReasonCode.FORBIDDEN, f"this key does not reach lockout {scope}")


# A caller no key limits: an AMQP command sent without a key, trusted as its broker user.
UNLIMITED = Grant(ROLES)


class ApiKeys:
    """The keys of `REDEEM_API_KEYS`, each kept as its digest, with its grant."""

    def __init__(self, entries: list[tuple[bytes, Grant]]) -> None:
        self._entries = entries

    @classmethod
    def parse(cls, spec: str) -> ApiKeys:
        """Raises ValueError, naming what is wrong, for an entry that does not parse."""
        parts = (part.strip() for part in spec.split(";"))
        return cls([_entry(part) for part in parts if part])

    def grant(self, key: str) -> Grant | None:
        """The grant of `key`, if it is one of them; the same time whichever it is."""
        return self._find(hashlib.sha256(key.encode()).digest())

    def grant_of_digest(self, written: str) -> Grant | None:
        """The grant of the key written as a digest (`sha256:<hex>`, as `digest_of` writes
        it; a delayed copy of a command names its key so), if it is one of them."""
        hexdigits = written.removeprefix(DIGEST_PREFIX) if written.startswith(DIGEST_PREFIX) else ""
        try:
            return self._find(bytes.fromhex(hexdigits)) if hexdigits else None
        except ValueError:
            return None

    def _find(self, given: bytes) -> Grant | None:
        found = None
        for digest, grant in self._entries:  # compare with every key: constant time
            if hmac.compare_digest(digest, given):
                found = grant
        return found

    def digests(self) -> list[bytes]:
        return [digest for digest, _ in self._entries]


def _entry(text: str) -> tuple[bytes, Grant]:
    key, _, rest = text.partition("=")
    roles, *limits = rest.split("|")
    grant = Grant(_names(roles))
    if unknown := grant.roles - ROLES:
        raise ValueError(f"unknown roles in REDEEM_API_KEYS: {sorted(unknown)}")
    return written_digest(key.strip(), "REDEEM_API_KEYS"), limited(grant, limits, "REDEEM_API_KEYS")


def limited(grant: Grant, limits: list[str], setting: str) -> Grant:
    """`grant` within `limits`, each `campaigns=NAME,...` or `handlers=NAME,...`."""
    for limit in limits:
        name, _, values = limit.partition("=")
        name = name.strip()
        if name not in LIMITS or not _names(values):
            raise ValueError(
                f"{setting}: {limit.strip()!r} is not campaigns=NAME,... or handlers=NAME,..."
            )
        grant = dataclasses.replace(grant, **{name: _names(values)})
    return grant


def _names(text: str) -> frozenset[str]:
    return frozenset(name.strip() for name in text.split(",") if name.strip())


def written_digest(key: str, setting: str) -> bytes:
    """The SHA-256 digest of a key (or secret) as a setting writes it: the key itself, or
    `sha256:<64 hex digits>`."""
    if not key:
        raise ValueError(f"{setting} has an entry without a key")
    if not key.startswith(DIGEST_PREFIX):
        return hashlib.sha256(key.encode()).digest()
    hexdigits = key.removeprefix(DIGEST_PREFIX).lower()
    if len(hexdigits) != 64 or not set(hexdigits) <= _HEX:
        raise ValueError(f"{setting}: a sha256: key is followed by 64 hex digits")
    return bytes.fromhex(hexdigits)


def bearer_digest(authorization: str) -> str | None:
    """The key an `Authorization` value names (`Bearer <key>`), written as its digest
    (`sha256:<hex>`); None when it names none."""
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    return digest_of(key) if scheme.lower() == "bearer" and key else None
