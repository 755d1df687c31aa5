"""The outbox relay: stored events out to `redemption.events`, outcomes to callers.

At least once: an event leaves its outbox only after the broker confirmed
it, so a crash between the two sends it again with the same `eventId`.
A code's events go out in order, one after another; codes go in parallel.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time

import structlog
from opentelemetry.trace import SpanKind
from prometheus_client import Counter, Histogram

from shared import topology, tracing
from shared.clock import to_ms, utcnow
from shared.domain.model import Redemption
from shared.messages import CodeEventMessage, CodeRecord, RedemptionRecord
from shared.ports import Outbox, PendingEvent, PendingEvents, Publisher, Unroutable
from shared.runtime.failpoints import failpoint

log = structlog.get_logger()
# A relay whose last good pass is older than this is not progressing (a pass that is
# all publish timeouts lasts the batch's codes' first timeouts, 5 s each, in parallel).
STALLED_S = 60.0
RELAYED = Counter("redemption_events_relayed", "Events confirmed by the broker", ["routing_key"])
TO_EVENT = Histogram(
    "redemption_accepted_to_event_seconds",
    "From a redemption's acceptance to the broker confirming an event it wrote, by kind"
    " (events written by a worker's job; those of timers are not)",
    ["routing_key"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600),
)
REPLIED = Counter("redemption_replies_sent", "Outcomes sent to callers that asked")


def event_body(pending: PendingEvent) -> bytes:
    event = pending.event
    message = CodeEventMessage(
        eventId=event.event_id,
        eventType=event.event_type,
        occurredAt=to_ms(event.occurred_at) or 0,
        redemptionId=event.redemption_id,
        userId=event.user_id,
        code=CodeRecord.of(pending.code),
    )
    return message.model_dump_json().encode()


class Relay:
    def __init__(
        self,
        store: Outbox,
        broker: Publisher,
        *,
        batch: int,
        idle_s: float,
        stalled_s: float = STALLED_S,
    ) -> None:
        self._store = store
        self._broker = broker
        self._batch = batch
        self._idle_s = idle_s
        self._stalled_s = stalled_s
        self._passed_at: float | None = None
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Relay until `stop()`; pause only when there was nothing to do."""
        while not self._stopping.is_set():
            try:
                busy = await self.relay_once()
                self._passed_at = time.monotonic()
            except Exception:
                log.exception("relay pass failed; trying again")
                busy = False
            if not busy:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._idle_s)

    def stop(self) -> None:
        self._stopping.set()

    async def check(self) -> None:
        """Raise unless a pass ended well within `stalled_s`: for readiness."""
        if self._passed_at is None or time.monotonic() - self._passed_at > self._stalled_s:
            raise RuntimeError("the relay has not completed a pass lately")

    async def relay_once(self) -> bool:
        """One pass over events and replies; True if a batch was full and all went out.

        A pass that the broker did not confirm in full is followed by a pause, not by
        another pass at once: while the broker is away, that would only spin.
        """
        pending = await self._store.pending_events(limit=self._batch)
        published = await asyncio.gather(*(self._publish_in_order(p) for p in pending))
        if pending:  # an idle pass is no place to crash: it would only churn restarts
            await failpoint("relay-before-mark")
        await self._store.mark_relayed([p for p in published if p.events])
        waiting = await self._store.pending_replies(limit=self._batch)
        replied = await asyncio.gather(*(self._reply(r) for r in waiting))
        if waiting:
            await failpoint("relay-before-reply-mark")
        await self._store.mark_replied([r for r in replied if r is not None])
        stalled = None in replied or any(
            len(sent.events) < len(item.events)
            for sent, item in zip(published, pending, strict=True)
        )
        return not stalled and (len(pending) == self._batch or len(waiting) == self._batch)

    async def _publish_in_order(self, item: PendingEvents) -> PendingEvents:
        """Publish a code's events in order; return the prefix the broker confirmed."""
        done: list[PendingEvent] = []
        for pending in item.events:
            try:
                # The trace the event was written in goes on to its observers.
                with tracing.TRACER.start_as_current_span(
                    f"relay {pending.event.routing_key}",
                    context=tracing.continued(pending.trace),
                    kind=SpanKind.PRODUCER,
                    attributes={"event.id": pending.event.event_id},
                ):
                    await self._broker.publish(
                        topology.EVENTS_EXCHANGE,
                        pending.event.routing_key,
                        event_body(pending),
                        message_id=pending.event.event_id,
                        # An event that no observer subscribed to is not an error.
                        mandatory=False,
                        headers=tracing.carrier(),
                    )
            except Exception:
                log.warning("event not confirmed", eventId=pending.event.event_id, exc_info=True)
                break
            RELAYED.labels(pending.event.routing_key).inc()
            if pending.accepted_at is not None:
                waited = (utcnow() - pending.accepted_at).total_seconds()
                TO_EVENT.labels(pending.event.routing_key).observe(max(0.0, waited))
            done.append(pending)
        return dataclasses.replace(item, events=tuple(done))

    async def _reply(self, redemption: Redemption) -> Redemption | None:
        body = RedemptionRecord.of(redemption).model_dump_json().encode()
        for reply in redemption.replies:
            try:
                await self._broker.publish(
                    "",
                    reply.queue,
                    body,
                    correlation_id=reply.correlation_id,
                    message_id=redemption.redemption_id,
                )
                REPLIED.inc()
            except Unroutable:
                log.info("caller's reply queue is gone", queue=reply.queue)
            except Exception:
                log.warning("reply not confirmed", exc_info=True)
                return None
        return redemption
