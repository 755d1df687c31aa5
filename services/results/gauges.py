"""The system's backlogs, sampled for Prometheus by the one `results` process of a
deployment (so each is one series, not one a worker): events waiting in the outboxes
and the age of the oldest, timers set and due, and the messages waiting in the work
queue and in the dead-letter queue."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import structlog
from prometheus_client import Gauge

from shared import topology
from shared.clock import Clock
from shared.ports import Attempts, Broker, Outbox

log = structlog.get_logger()
OUTBOX_EVENTS = Gauge("redemption_outbox_events", "Events waiting in the outboxes to be relayed")
OUTBOX_AGE = Gauge(
    "redemption_outbox_oldest_age_seconds",
    "How long ago the oldest event waiting in the outboxes happened (0: none waits)",
)
TIMERS = Gauge("redemption_timers", "Fulfillment timers, by state: set, and due now", ["state"])
QUEUED = Gauge("redemption_queue_messages", "Messages waiting in a queue", ["queue"])
QUEUES = (topology.WORK_QUEUE, topology.DEAD_LETTER_QUEUE)


class Sampled(Outbox, Attempts, Protocol):
    """What the gauges read from the store."""


class Gauges:
    """Samples every `every_s` seconds until `stop()`; a failed sample is logged and the
    gauges keep their last values."""

    def __init__(self, store: Sampled, broker: Broker, clock: Clock, *, every_s: float) -> None:
        self._store = store
        self._broker = broker
        self._clock = clock
        self._every_s = every_s
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sample()
            except Exception:
                log.warning("could not sample the backlogs", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._every_s)

    def stop(self) -> None:
        self._stopping.set()

    async def sample(self) -> None:
        now = self._clock()
        backlog = await self._store.backlog()
        OUTBOX_EVENTS.set(backlog.events)
        OUTBOX_AGE.set(0 if backlog.oldest is None else (now - backlog.oldest).total_seconds())
        timers = await self._store.timers(now)
        TIMERS.labels("set").set(timers.pending)
        TIMERS.labels("due").set(timers.due)
        for queue in QUEUES:
            QUEUED.labels(queue).set(await self._broker.queue_depth(queue))
