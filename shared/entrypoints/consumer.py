"""What every queue consumer shares, over the broker port: a task a delivery, a graceful
stop, and the way every delivery ends settled."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import Any

import structlog
from prometheus_client import Counter, Gauge

from shared import topology
from shared.domain.backoff import RetryPolicy, compute_backoff
from shared.ports.broker import Broker, Delivery, Subscription

log = structlog.get_logger()
IN_FLIGHT = Gauge("redemption_consumer_in_flight", "Deliveries being handled, by queue", ["queue"])
REDELIVERED = Counter(
    "redemption_consumer_redeliveries",
    "Deliveries of a message delivered before (a retry, or one a stopped consumer left)",
    ["queue"],
)


class Consumer(ABC):
    """Consumes one queue with manual settling, one task a delivery; `stop()` stops
    taking deliveries and waits for those in hand, so that a shutdown finishes its work.

    `retry` times delayed retries: after delivery n (0-based) a message comes back
    `compute_backoff(retry, n)` seconds later.
    """

    def __init__(
        self, broker: Broker, queue: str, *, retry: RetryPolicy = topology.BROKER_RETRY
    ) -> None:
        self._broker = broker
        self._queue = queue
        self._retry = retry
        self._subscription: Subscription | None = None
        self._in_flight: set[asyncio.Task[Any]] = set()
        # This queue's series, served at 0 until the first delivery.
        self._handling = IN_FLIGHT.labels(queue)
        self._redelivered = REDELIVERED.labels(queue)

    @abstractmethod
    async def handle(self, delivery: Delivery) -> None:
        """Settle `delivery` once, whatever happens: every consumer states its policy."""

    async def start(self) -> None:
        self._subscription = await self._broker.consume(self._queue, self._track)

    async def stop(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            await subscription.cancel()
        await asyncio.gather(*self._in_flight)

    async def check(self) -> None:
        """Raise unless consuming (started, not stopped): for readiness."""
        if self._subscription is None:
            raise ConnectionError(f"not consuming {self._queue}")

    async def settle(self, delivery: Delivery, settling: Awaitable[None]) -> None:
        """Await `settling`; should the broker not take it, release the delivery back to
        its queue (a closed channel does that anyway), so none stays unsettled. A broker
        that keeps refusing is bounded by the delivery count, which a release raises."""
        try:
            await settling
        except Exception:
            log.warning("could not settle a message; releasing it", exc_info=True)
            with contextlib.suppress(Exception):
                await delivery.release()

    def backoff_s(self, attempt: int) -> float:
        """The pause before the message comes back after attempt `attempt` (0-based)."""
        return compute_backoff(self._retry, attempt, 0.0)

    async def retry_later(self, delivery: Delivery) -> None:
        """Back on the queue after a pause that grows with its deliveries so far."""
        await self.settle(delivery, delivery.retry_later(self.backoff_s(delivery.deliveries)))

    async def _track(self, delivery: Delivery) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        if delivery.deliveries:
            self._redelivered.inc()
        with self._handling.track_inprogress():
            await self.handle(delivery)
