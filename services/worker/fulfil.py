"""One call of a campaign's fulfillment handler, for a code's current attempt, recorded."""

from __future__ import annotations

from datetime import timedelta

from opentelemetry.trace import SpanKind

from services.worker.transports import Transports
from shared import tracing
from shared.clock import Clock
from shared.domain import attempts, fulfillment
from shared.domain.model import AttemptState, Campaign, Code, CodeRef
from shared.domain.states import CodeState
from shared.ports import Store
from shared.runtime.failpoints import failpoint
from shared.service.attempt_outcomes import AttemptOutcomes

# A timeout that fires this close to the deadline counts as reaching it.
_SLACK = timedelta(milliseconds=50)


class Fulfiller:
    def __init__(
        self,
        store: Store,
        transports: Transports,
        outcomes: AttemptOutcomes,
        clock: Clock,
        *,
        lease_s: float,
    ) -> None:
        self._store = store
        self._transports = transports
        self._outcomes = outcomes
        self._clock = clock
        self._lease_s = lease_s

    async def attempt(self, campaign: Campaign, ref: CodeRef, code: Code, operation: str) -> Code:
        """Call the handler (`operation` "redeem", or "async" to poll) and record its answer.

        An attempt's "redeem" call is made once: it is recorded as made before it
        is made, and only by the caller that recorded it, so a crash leaves the
        attempt's outcome to its deadline rather than calling again.
        Waits no longer than the attempt's deadline, nor, polling an
        asynchronous handler, than a lease: then the code's timer looks again.
        Returns the code as it now stands.
        """
        if operation == "redeem":
            calling = await self._record_call(campaign, ref, code)
            if calling is None:  # called by another worker, or over meanwhile
                return await self._store.get_code(ref) or code
            code = calling
        deadline = code.deadline_at or self._clock() + timedelta(seconds=campaign.timeout_s)
        left = (deadline - self._clock()).total_seconds()
        # Within the lease (less a margin for the time since it was taken), so that no
        # other worker polls while this call may still answer.
        budget = min(left, 0.9 * self._lease_s) if campaign.is_async else left
        request = fulfillment.request_for(campaign, code, operation)
        await failpoint("before-fulfillment-call")
        with tracing.TRACER.start_as_current_span(
            f"fulfil {campaign.handler}",
            kind=SpanKind.CLIENT,
            attributes={"fulfillment.operation": operation, "fulfillment.attempt": code.attempt},
        ):
            answer = await self._transports.call(campaign, request, max(budget, 0.001))
        await failpoint("after-fulfillment-call")
        timed_out = False
        if answer is None:
            if campaign.is_async and self._clock() < deadline - _SLACK:
                return code  # still within the allowed time: the timer polls again
            answer, timed_out = attempts.timed_out(campaign), True
        recorded = await self._outcomes.record(campaign, ref, code, answer, timed_out=timed_out)
        if recorded is None:  # another answer, or the deadline, came first
            return await self._store.get_code(ref) or code
        return recorded

    async def _record_call(self, campaign: Campaign, ref: CodeRef, code: Code) -> Code | None:
        """Record the attempt `Running` if it is still `Starting`: the caller that does
        makes the call. None if another did, or the attempt is over."""
        return await self._store.update_attempt(
            ref,
            redemption_id=code.redemption_id or "",
            attempt=code.attempt,
            state=CodeState.IN_PROGRESS,
            fields=attempts.calling(campaign, self._clock(), self._lease_s),
            attempt_state=AttemptState.STARTING,
        )
