"""The timer loop: every worker takes the timers that fell due, whichever set them.

Timers live on the codes in the store (`timer_at`): a deadline, the next poll
of an asynchronous handler, a retry after its backoff, or a redemption to
end. A worker takes a due timer with one atomic update that moves it to the
end of a lease, then acts on it; if the worker dies, the timer falls due
again when the lease ends and another worker (or this one, restarted) acts.

The loop also deletes, every `purge_every_s`, the plain generated codes kept
for a download that expired (`Jobs.purge_plain_codes`) and the expired sessions
(`Profiles.purge_sessions`): a store without a TTL monitor (the embedded one)
keeps none past its time either.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Protocol

import structlog
from prometheus_client import Counter, Histogram

from services.worker.fulfil import Fulfiller
from shared.clock import Clock
from shared.domain import attempts
from shared.domain.model import AttemptState, Code, CodeRef
from shared.domain.states import CodeState
from shared.ports import Attempts, Due, Jobs, Profiles
from shared.runtime.failpoints import failpoint
from shared.service.attempt_outcomes import AttemptOutcomes
from shared.service.campaign_cache import CampaignCache

log = structlog.get_logger()
FIRED = Counter("redemption_timers_fired", "Timers acted on", ["kind"])
PURGE_EVERY_S = 60.0  # as often as MongoDB's TTL monitor runs
LATENESS = Histogram(
    "redemption_timer_lateness_seconds",
    "How long after it fell due a timer was taken",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)


class Expiring(Jobs, Profiles, Protocol):
    """What the loop purges once expired: plain codes kept for a download, sessions."""


class TimerLoop:
    def __init__(
        self,
        store: Attempts,
        campaigns: CampaignCache,
        fulfiller: Fulfiller,
        outcomes: AttemptOutcomes,
        clock: Clock,
        *,
        lease_s: float,
        scan_s: float,
        concurrency: int = 64,
        expiring: Expiring | None = None,
        purge_every_s: float = PURGE_EVERY_S,
    ) -> None:
        self._store = store
        self._expiring = expiring
        self._purge_every = timedelta(seconds=purge_every_s)
        self._purged_at: datetime | None = None
        self._campaigns = campaigns
        self._fulfiller = fulfiller
        self._outcomes = outcomes
        self._clock = clock
        self._lease_s = lease_s
        self._scan_s = scan_s
        self._concurrency = concurrency
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="timers")

    async def check(self) -> None:
        """Raise unless the loop runs: for readiness."""
        if self._task is None or self._task.done():
            raise RuntimeError("the timer loop is not running")

    async def stop(self) -> None:
        """Take no more timers; finish those in hand."""
        self._stopping.set()
        if self._task is not None:
            await self._task
        await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            await self._purge_when_due()
            free = self._concurrency - len(self._in_flight)
            due: list[Due] = []
            if free > 0:
                try:
                    due = await self._store.take_due(self._clock(), self._lease_s, limit=free)
                except Exception:
                    log.exception("could not take due timers")
            for item in due:
                task = asyncio.create_task(self._fire(item))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)
            if len(due) < free or free == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._scan_s)

    async def _purge_when_due(self) -> None:
        now = self._clock()
        if self._expiring is None:
            return
        if self._purged_at is not None and now < self._purged_at + self._purge_every:
            return
        self._purged_at = now
        for what, purge in (
            ("plain codes", self._expiring.purge_plain_codes),
            ("sessions", self._expiring.purge_sessions),
        ):
            try:
                gone = await purge(now)
            except Exception:
                log.exception(f"could not delete expired {what}; tried again later")
                continue
            if gone:
                log.info(f"deleted expired {what}", count=gone)

    async def _fire(self, due: Due) -> None:
        if due.code.timer_at is not None:
            LATENESS.observe(max(0.0, (self._clock() - due.code.timer_at).total_seconds()))
        with structlog.contextvars.bound_contextvars(redemptionId=due.code.redemption_id):
            try:
                await failpoint("after-timer-taken")
                await self.fire(due.ref, due.code)
            except Exception:
                log.exception("timer failed; it falls due again when its lease ends")

    async def fire(self, ref: CodeRef, code: Code) -> None:
        """Act on a due timer of `code`: retry, time out, poll, or end the redemption."""
        state, now = code.code_state, self._clock()
        if state is CodeState.FAILED and code.retry_at is not None:
            FIRED.labels("retry").inc()
            campaign = await self._campaigns.get(code.code_type)
            started = await self._outcomes.retry(campaign, ref, code)
            if started is None:
                return
            code = await self._fulfiller.attempt(campaign, ref, started, "redeem")
        elif state is CodeState.IN_PROGRESS:
            campaign = await self._campaigns.get(code.code_type)
            if code.attempt_state is AttemptState.STARTING:
                FIRED.labels("start").inc()  # whoever opened the attempt died before calling
                code = await self._fulfiller.attempt(campaign, ref, code, "redeem")
            elif code.deadline_at is None or now >= code.deadline_at:
                FIRED.labels("timeout").inc()
                answer = attempts.timed_out(campaign)
                timed_out = await self._outcomes.record(campaign, ref, code, answer, timed_out=True)
                if timed_out is None:
                    return
                code = timed_out
            elif campaign.is_async:
                FIRED.labels("poll").inc()
                code = await self._fulfiller.attempt(campaign, ref, code, "async")
            else:
                return  # a synchronous call still within its time: the deadline comes next
        if attempts.is_over(code):
            FIRED.labels("conclude").inc()
            await self._outcomes.conclude(ref, code)
