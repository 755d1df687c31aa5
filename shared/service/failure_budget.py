"""The failure budget: throttling of failed redemptions, one budget for every intake and
worker, kept in the store (see `shared.domain.throttling`).

The intake checks it before it publishes (`check`), so a caller locked out is
refused at once and no code is looked at. A worker takes an entry in every
counted scope before it looks at the code (`reserve`), so no more attempts than
the limit reach a code in a window however many run at once, and settles the
entries when the redemption ends (`settle`).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from shared.clock import Clock
from shared.domain.access import Grant
from shared.domain.model import Campaign, Redemption, RedemptionStatus
from shared.domain.reasons import DomainError
from shared.domain.throttling import (
    Caller,
    FailureLimits,
    FailureWindow,
    Limit,
    LockedOut,
    Lockout,
    ScopeKind,
    counts,
    lockouts,
    longest_wait,
    scope_of,
)
from shared.ports import FailureWindows
from shared.ports.throttling import WindowChange
from shared.service import measures
from shared.service.campaign_cache import CampaignCache


class FailureBudget:
    """`limits` hold unless the caller's campaign sets its own; a caller that names no
    campaign is held to the strictest that any campaign or `limits` set."""

    def __init__(
        self,
        store: FailureWindows,
        limits: FailureLimits,
        campaigns: CampaignCache,
        clock: Clock,
    ) -> None:
        self._store = store
        self._limits = limits
        self._campaigns = campaigns
        self._clock = clock

    async def check(self, caller: Caller) -> None:
        """Raise `LockedOut` when one of the caller's scopes has no room left."""
        scopes = await self._scopes(caller)
        if not scopes:
            return
        windows = await self._store.failure_windows([scope for scope, _ in scopes])
        wait = longest_wait(windows, scopes, self._clock())
        if wait is not None:
            measures.LOCKOUTS.labels("intake").inc()
            raise LockedOut(wait)

    async def reserve(self, attempt_id: str, caller: Caller) -> None:
        """Take an entry for the attempt in each of the caller's scopes, or none: raise
        `LockedOut` when one has no room (what was taken is given back)."""
        now = self._clock()
        taken: list[tuple[str, Limit]] = []
        for scope, limit in await self._scopes(caller):
            window = await self._store.change_failure_window(
                scope, limit, _admitting(attempt_id, now, limit)
            )
            if not window.holds(attempt_id):
                await self._give_back(attempt_id, taken)
                measures.LOCKOUTS.labels("worker").inc()
                raise LockedOut(window.retry_after(now) or limit.window)
            taken.append((scope, limit))

    async def settle(self, ended: Redemption) -> None:
        """After a redemption ended: a guess's refusal keeps its entries, a redemption
        redeemed clears its user's window (where any limits count users), any other
        outcome gives its entries back."""
        if not ended.status.is_terminal or _refused_unseen(ended) or counts(ended.reason_code):
            return
        # Over every scope any limits count: those the reservation took are among them,
        # whether or not the request named the campaign its code was found in (it names
        # it by now), and a user's window is one across campaigns.
        scopes = await self._scopes(dataclasses.replace(ended.caller, code_type=None))
        user = scope_of(ScopeKind.USER, ended.user_id)
        if ended.status is RedemptionStatus.REDEEMED and any(s == user for s, _ in scopes):
            await self._store.clear_failure_window(user)
            scopes = [(scope, limit) for scope, limit in scopes if scope != user]
        await self._give_back(ended.redemption_id, scopes)

    async def lockouts(
        self, grant: Grant, *, after: str | None = None, limit: int = 100, scan: int = 10_000
    ) -> tuple[list[Lockout], str | None]:
        """Up to `limit` scopes locked out now within the key's reach, by scope, after
        `after`; and the scope the next page starts after (None: no more follow).

        Most live windows have room left: the windows are read in turn until `limit`
        lockouts are found or they end, or `scan` of them were read (a page may then
        hold fewer than `limit` and still name where the next one starts)."""
        now = self._clock()
        reachable = grant.lockout_scopes()
        if reachable is not None:
            scopes = [scope for scope in reachable if after is None or scope > after]
            locked = lockouts(await self._store.failure_windows(scopes), now)
            locked.sort(key=lambda lockout: lockout.scope)
            return locked[:limit], locked[limit - 1].scope if len(locked) > limit else None
        batch = min(max(limit, 100), scan)
        found: list[Lockout] = []
        cursor, read = after, 0
        while True:
            windows = await self._store.live_failure_windows(now, after=cursor, limit=batch)
            for n, window in enumerate(windows, 1):
                cursor = window.scope
                found.extend(lockouts([window], now))
                if len(found) == limit:
                    more = n < len(windows) or len(windows) == batch
                    return found, cursor if more else None
            read += len(windows)
            if len(windows) < batch:
                return found, None
            if read >= scan:
                return found, cursor

    async def clear(self, scope: str, grant: Grant) -> bool:
        """Lift a lockout within the key's reach (forget the scope's window); whether there
        was one."""
        grant.check_lockout(scope)
        return await self._store.clear_failure_window(scope)

    async def count_in_campaign(self, attempt_id: str, campaign: Campaign) -> None:
        """Count a guess that named no campaign in the window of the campaign its code
        was found in, when that campaign's limits count campaigns: an entry if the window
        has room. Counting only, once the code was looked at: it changes no answer, and a
        window with no room is left as it is (it locks the campaign out already)."""
        limit = self._limits.for_campaign(campaign.failure_limits).campaign
        if limit is None:
            return
        scope = scope_of(ScopeKind.CAMPAIGN, campaign.code_type)
        await self._store.change_failure_window(
            scope, limit, _admitting(attempt_id, self._clock(), limit)
        )

    async def _scopes(self, caller: Caller) -> list[tuple[str, Limit]]:
        """The caller's counted scopes, under its campaign's limits (an unknown campaign
        has the global ones). A caller that names no campaign is held to the strictest
        limits of every campaign and the global ones, as its code may be in any of them:
        naming none does not escape a campaign's limits. They come from the campaigns'
        listing, not from the code, which is not looked at before its entries are taken."""
        if caller.code_type is None:
            return caller.scopes(await self._campaigns.strictest_limits(self._limits))
        limits = self._limits
        try:
            campaign = await self._campaigns.get(caller.code_type)
        except DomainError:
            campaign = None
        if campaign is not None:
            limits = limits.for_campaign(campaign.failure_limits)
        return caller.scopes(limits)

    async def _give_back(self, attempt_id: str, scopes: list[tuple[str, Limit]]) -> None:
        for scope, limit in scopes:
            await self._store.change_failure_window(
                scope, limit, lambda window: window.without(attempt_id)
            )


def _admitting(attempt_id: str, now: datetime, limit: Limit) -> WindowChange:
    def admit(window: FailureWindow) -> FailureWindow:
        return window.admit(attempt_id, now, limit)

    return admit


def _refused_unseen(ended: Redemption) -> bool:
    """Refused for being locked out: it took no entry."""
    return ended.reason_code is LockedOut.REASON
