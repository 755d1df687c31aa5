"""Guessing defences. Throttling failed redemptions: how many guesses a user, an API key, a
client address or a campaign gets in a sliding window before it is locked out (reason
40765). Uniform refusals: one answer for every refusal a guess gets (`as_told`).

Each counted scope keeps a window of entries, one per redemption attempt. An
attempt takes its entry before its code is looked at, and only if the window
has room: however many attempts run at once, no more than the limit reach a
code in any window. The entry stays when the attempt ends in a refusal that a
guess gets (`COUNTED`); otherwise it is given back, and a redemption that
succeeds clears its user's window.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.domain.reasons import DomainError, ReasonCode

R = ReasonCode
# Refusals a guesser gets: the code is unknown, not sold yet, void, or someone else's.
COUNTED = frozenset(
    {
        R.REDEMPTION_CODE_NOT_FOUND,
        R.REDEMPTION_CODE_NOT_ACTIVE,
        R.REDEMPTION_CODE_TYPE_NOT_FOUND,
        R.REDEMPTION_CODE_INVALID,
        R.REDEMPTION_CODE_REDEEMED,
        R.REDEMPTION_CODE_REDEEMED_BY_OTHER,
        R.CODE_TYPE_SCAN_CODE_MISMATCH_FOR_MULTI_USE_CODE,
        R.REDEMPTION_CODE_TYPE_MISMATCH,
        R.INVALID_SCAN_CODE_FOR_TYPE,
    }
)


class ScopeKind(StrEnum):
    USER = "user"
    KEY = "key"
    ADDRESS = "address"
    CAMPAIGN = "campaign"


@dataclass(frozen=True)
class Limit:
    """At most `failures` counted attempts within any `window`."""

    failures: int
    window: timedelta

    def __post_init__(self) -> None:
        if self.failures < 1 or self.window <= timedelta(0):
            raise DomainError(
                R.INVALID_PARAMETER_VALUE, "a failure limit needs failures >= 1 and a window > 0"
            )

    def __str__(self) -> str:
        return f"{self.failures}/{round(self.window.total_seconds())}s"


DEFAULT_USER_LIMIT = Limit(10, timedelta(minutes=15))
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_LIMIT = re.compile(r"^(\d+)/(\d+)([smhd]?)$")


def parse_limits(spec: str) -> dict[ScopeKind, Limit | None]:
    """`user=10/15m,key=1000/1h,address=off`: the limit of each scope kind named."""
    limits: dict[ScopeKind, Limit | None] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, _, value = (s.strip() for s in part.partition("="))
        try:
            scope = ScopeKind(kind)
        except ValueError:
            raise ValueError(f"unknown scope {kind!r} in failure limits {spec!r}") from None
        if value == "off":
            limits[scope] = None
            continue
        matched = _LIMIT.match(value)
        if matched is None:
            raise ValueError(f"{part!r}: a limit is 'off' or FAILURES/WINDOW, e.g. 10/15m")
        failures, amount, unit = matched.groups()
        window = timedelta(seconds=int(amount) * _UNITS[unit or "s"])
        try:
            limits[scope] = Limit(int(failures), window)
        except DomainError as error:
            raise ValueError(f"{part!r}: {error.message}") from None
    return limits


@dataclass(frozen=True)
class FailureLimits:
    """The limit of each scope kind; None: that kind is not counted."""

    user: Limit | None = DEFAULT_USER_LIMIT
    key: Limit | None = None
    address: Limit | None = None
    campaign: Limit | None = None

    @classmethod
    def parse(cls, spec: str) -> FailureLimits:
        """The defaults, with the limits `spec` names (see `parse_limits`) in their place."""
        return cls().overridden(parse_limits(spec))

    def overridden(self, limits: Mapping[ScopeKind, Limit | None]) -> FailureLimits:
        """These limits, with those of `limits` in their place."""
        return dataclasses.replace(self, **{kind.value: limit for kind, limit in limits.items()})

    def for_campaign(self, spec: str | None) -> FailureLimits:
        """These limits, with those a campaign sets (`Campaign.failure_limits`) in their place."""
        return self.overridden(parse_limits(spec)) if spec else self

    def of(self, kind: ScopeKind) -> Limit | None:
        limit: Limit | None = getattr(self, kind.value)
        return limit


DEFAULT_LIMITS = FailureLimits()


def strictest(first: FailureLimits, *others: FailureLimits) -> FailureLimits:
    """Limits as strict as each of these, kind by kind: what a request that names no
    campaign is held to, since its code may be in any campaign. Of two limits, the
    fewest failures over the longest window (stricter than either); a kind counted by
    none is not counted."""
    kinds = {
        kind.value: _stricter(limits.of(kind) for limits in (first, *others)) for kind in ScopeKind
    }
    return FailureLimits(**kinds)


def _stricter(limits: Iterable[Limit | None]) -> Limit | None:
    counted = [limit for limit in limits if limit is not None]
    if not counted:
        return None
    return Limit(min(x.failures for x in counted), max(x.window for x in counted))


@dataclass(frozen=True)
class Caller:
    """Who asks for a redemption, as far as throttling counts them."""

    user_id: str
    key_id: str | None = None
    address: str | None = None
    code_type: str | None = None

    def scopes(self, limits: FailureLimits) -> list[tuple[str, Limit]]:
        """Each counted scope (`kind:value`) of this caller, with its limit."""
        values = {
            ScopeKind.USER: self.user_id,
            ScopeKind.KEY: self.key_id,
            ScopeKind.ADDRESS: None if self.address is None else address_scope(self.address),
            ScopeKind.CAMPAIGN: self.code_type,
        }
        counted = []
        for kind, value in values.items():
            limit = limits.of(kind)
            if value is not None and limit is not None:
                counted.append((scope_of(kind, value), limit))
        return counted


def address_scope(address: str) -> str:
    """What a client address counts as: an IPv6 address its /64 (one subscriber's
    network, whose addresses a caller may rotate through), an IPv4 address itself, as
    is one carried in IPv6 (`::ffff:a.b.c.d`); anything else as given."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is None:
            return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
        ip = ip.ipv4_mapped
    return str(ip)


def scope_of(kind: ScopeKind, value: str) -> str:
    return f"{kind.value}:{value}"


def kind_of(scope: str) -> ScopeKind:
    """The kind of a scope string; DomainError for one that names no kind."""
    kind, _, value = scope.partition(":")
    try:
        found = ScopeKind(kind)
    except ValueError:
        found = None
    if found is None or not value:
        raise DomainError(
            R.INVALID_PARAMETER_VALUE,
            f"a scope is KIND:VALUE with KIND one of {', '.join(k.value for k in ScopeKind)}",
        )
    return found


@dataclass(frozen=True)
class Entry:
    attempt_id: str
    at: datetime


@dataclass(frozen=True)
class FailureWindow:
    """A scope's recent counted attempts, oldest first, under the limit they were
    counted by; `version` for the store's conditional write."""

    scope: str
    limit: Limit
    entries: tuple[Entry, ...] = ()
    version: int = 0

    def recent(self, now: datetime) -> tuple[Entry, ...]:
        return tuple(e for e in self.entries if e.at > now - self.limit.window)

    def holds(self, attempt_id: str) -> bool:
        return any(e.attempt_id == attempt_id for e in self.entries)

    def admit(self, attempt_id: str, now: datetime, limit: Limit) -> FailureWindow:
        """Under `limit`, with an entry for `attempt_id` if the window has room (or has
        it already); entries that fell out of the window dropped."""
        window = self.under(limit)
        recent = window.recent(now)
        if len(recent) < limit.failures and not self.holds(attempt_id):
            recent = (*recent, Entry(attempt_id, now))
        return dataclasses.replace(window, entries=recent)

    def under(self, limit: Limit) -> FailureWindow:
        return dataclasses.replace(self, limit=limit)

    def without(self, attempt_id: str) -> FailureWindow:
        kept = tuple(e for e in self.entries if e.attempt_id != attempt_id)
        return dataclasses.replace(self, entries=kept)

    def retry_after(self, now: datetime) -> timedelta | None:
        """How long until an attempt has room again; None: it has now."""
        recent = self.recent(now)
        if len(recent) < self.limit.failures:
            return None
        return recent[-self.limit.failures].at + self.limit.window - now

    @property
    def expires_at(self) -> datetime | None:
        """When every entry has left the window: the store may forget it then."""
        if not self.entries:
            return None
        return max(e.at for e in self.entries) + self.limit.window


@dataclass(frozen=True)
class Lockout:
    """A scope that has no room left, for operators to see and clear."""

    scope: str
    failures: int
    limit: Limit
    retry_after: timedelta


def lockouts(windows: Iterable[FailureWindow], now: datetime) -> list[Lockout]:
    """The windows that lock their scope out now."""
    found = []
    for window in windows:
        wait = window.retry_after(now)
        if wait is not None:
            found.append(Lockout(window.scope, len(window.recent(now)), window.limit, wait))
    return found


class LockedOut(DomainError):
    """A refusal without looking at the code: the caller has no room left (40765)."""

    REASON = R.REDEMPTION_CODE_MAX_FAILED_EXCEEDED_FOR_USER

    def __init__(self, retry_after: timedelta) -> None:
        self.retry_after_s = max(1, math.ceil(retry_after.total_seconds()))
        super().__init__(
            self.REASON,
            f"too many failed redemptions: try again in {self.retry_after_s} s",
        )


def longest_wait(
    windows: Iterable[FailureWindow], scopes: Iterable[tuple[str, Limit]], now: datetime
) -> timedelta | None:
    """How long until each of `scopes` has room, under its limit; None: all have now."""
    stored = {w.scope: w for w in windows}
    waits = [
        stored[scope].under(limit).retry_after(now) for scope, limit in scopes if scope in stored
    ]
    return max((w for w in waits if w is not None), default=None)


# What a caller is told, under uniform refusals, in place of any of `COUNTED`.
UNIFORM_REFUSAL = (R.REDEMPTION_CODE_NOT_FOUND, "no such code")


def as_told(
    reason: ReasonCode | None, message: str | None, *, uniform: bool
) -> tuple[ReasonCode | None, str | None]:
    """The refusal a caller is told: under uniform refusals, every refusal a guess gets is
    the same one, so the answer tells a guesser nothing about the codes that exist."""
    if uniform and reason in COUNTED:
        return UNIFORM_REFUSAL
    return reason, message


def counts(reason: ReasonCode | None) -> bool:
    """Whether an attempt that ended with `reason` keeps its entry (a guess's refusal)."""
    return reason in COUNTED
