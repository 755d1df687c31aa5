"""An in-memory stand-in for the broker port (for unit tests).

It keeps what is published, hands a consumer the deliveries a test gives it, and
records how each delivery was settled. A delayed retry is kept as `Delayed` until the
test delivers it, as a delay queue would after its TTL; a release goes back to `ready`.
A publish to an exchange the test `refuse`s is not confirmed, as when the broker fails;
with `acks_fail`, neither is an ack. Its `dead_letter_log` reads back what was
dead-lettered, as the broker's dead-letter log does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared import topology
from shared.adapters.rabbitmq.deadletters import Newest, dead_letter
from shared.adapters.rabbitmq.delivery import copy_headers
from shared.clock import Clock, utcnow
from shared.domain.reasons import DomainError
from shared.ports import Broker, Delivery, Handler
from shared.ports.broker import DeadLetter, DeadLetterLog

DEFAULT_ROUTING_KEYS = {
    topology.WORK_QUEUE: topology.REDEEM_ROUTING_KEY,
    topology.JOBS_QUEUE: topology.JOB_ROUTING_KEY,
    topology.INTAKE_QUEUE: topology.REDEEM_ROUTING_KEY,
}


@dataclass(frozen=True)
class Message:
    """A message as published, with the deliveries it had (its copies' included)."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    deliveries: int = 0
    published_at: datetime | None = field(default=None, compare=False)

    @property
    def reason(self) -> str:
        """Why it was dead-lettered ("<reasonCode> <reasonName>: <message>"), or ""."""
        return str(self.headers.get(topology.DEAD_LETTER_REASON_HEADER, ""))

    @property
    def reason_code(self) -> int | None:
        code = self.headers.get(topology.DEAD_LETTER_REASON_CODE_HEADER)
        return int(code) if code is not None else None


@dataclass(frozen=True)
class Delayed:
    """A copy on its way back to `queue` after `delay_s`."""

    queue: str
    delay_s: float
    message: Message


class FakeDelivery:
    """One delivery of `message` from `queue`, settled through the fake broker."""

    def __init__(self, broker: FakeBroker, queue: str, message: Message) -> None:
        self._broker = broker
        self.queue = queue
        self.message = message
        self.settlements: list[str] = []

    @property
    def body(self) -> bytes:
        return self.message.body

    @property
    def headers(self) -> Mapping[str, Any]:
        return self.message.headers

    @property
    def message_id(self) -> str | None:
        return self.message.message_id

    @property
    def correlation_id(self) -> str | None:
        return self.message.correlation_id

    @property
    def reply_to(self) -> str | None:
        return self.message.reply_to

    @property
    def routing_key(self) -> str:
        return self.message.routing_key

    @property
    def deliveries(self) -> int:
        return self.message.deliveries

    @property
    def settled(self) -> str | None:
        """How it was settled: "ack", "dead-letter", "retry", "start-over", "release"."""
        return self.settlements[0] if self.settlements else None

    async def ack(self) -> None:
        if self._broker.acks_fail:
            raise ConnectionError("the channel is closed")
        self._settle("ack")

    async def dead_letter(self, error: DomainError) -> None:
        reason = {
            topology.DEAD_LETTER_REASON_HEADER: f"{int(error.reason)} {error.reason.name}: "
            f"{error.message}",
            topology.DEAD_LETTER_REASON_CODE_HEADER: int(error.reason),
        }
        await self._broker.publish(
            topology.DEAD_LETTER_EXCHANGE,
            self.routing_key,
            self.body,
            message_id=self.message_id,
            correlation_id=self.correlation_id,
            reply_to=self.reply_to,
            headers=_without_key(self.headers) | reason,
        )
        self._settle("dead-letter")

    async def retry_later(self, delay_s: float) -> None:
        headers = copy_headers(self.headers)  # the key as its digest, as the broker's copy
        copy = dataclasses.replace(self.message, headers=headers, deliveries=self.deliveries + 1)
        await self._broker.delay(self.queue, delay_s, copy)
        self._settle("retry")

    async def start_over(self, delay_s: float, headers: Mapping[str, Any]) -> None:
        fresh = copy_headers(self.headers) | dict(headers)
        copy = dataclasses.replace(self.message, headers=fresh, deliveries=0)
        await self._broker.delay(self.queue, delay_s, copy)
        self._settle("start-over")

    async def release(self) -> None:
        if self.settlements:
            return
        again = dataclasses.replace(self.message, deliveries=self.deliveries + 1)
        self._broker.ready.append((self.queue, again))
        self._settle("release")

    def _settle(self, how: str) -> None:
        self.settlements.append(how)
        if len(self.settlements) > 1:
            self._broker.settled_twice.append(self)
            raise AssertionError(f"settled twice: {self.settlements}")


def _without_key(headers: Mapping[str, Any]) -> dict[str, Any]:
    keys = (topology.AUTHORIZATION_HEADER, topology.KEY_DIGEST_HEADER)
    return {k: v for k, v in headers.items() if k not in keys}


class FakeSubscription:
    def __init__(self, broker: FakeBroker, queue: str) -> None:
        self._broker = broker
        self._queue = queue

    async def cancel(self) -> None:
        self._broker.consumers.pop(self._queue, None)


class FakeDeadLetterLog:
    """The port's `DeadLetterLog` over the dead letters `broker` was given, read as the
    broker's dead-letter log reads them. Beside the broker rather than on it: the unit
    tests' `FakeBroker.dead_letters()` already lists them as published."""

    def __init__(self, broker: FakeBroker) -> None:
        self._broker = broker

    async def dead_letters(self, since: datetime, limit: int) -> list[DeadLetter]:
        wanted, now = Newest(since, limit), self._broker.clock()
        for message in self._broker.dead_letters():
            stamped = message.published_at
            wanted.add(
                dead_letter(
                    routing_key=message.routing_key,
                    headers=message.headers,
                    body=message.body,
                    message_id=message.message_id,
                    # AMQP's timestamp, to the second
                    timestamp=stamped.replace(microsecond=0) if stamped else None,
                    read_at=now,
                )
            )
        return wanted.newest_first()


class FakeBroker:
    def __init__(self, clock: Clock = utcnow) -> None:
        self.clock = clock
        self.dead_letter_log = FakeDeadLetterLog(self)
        self.published: list[Message] = []
        self.delayed: list[Delayed] = []
        self.ready: list[tuple[str, Message]] = []  # released, back on their queues
        self.consumers: dict[str, Handler] = {}
        self.deliveries: list[FakeDelivery] = []
        self.settled_twice: list[FakeDelivery] = []
        self.refused: set[str] = set()
        self.acks_fail = False  # as when the consuming channel closed

    def refuse(self, *exchanges: str) -> None:
        """Publishes to these exchanges go unconfirmed from now on."""
        self.refused.update(exchanges)

    def confirm_all(self) -> None:
        self.refused.clear()

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        mandatory: bool = True,
        message_id: str | None = None,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        if exchange in self.refused:
            raise TimeoutError(f"the broker did not confirm a publish to {exchange!r}")
        message = Message(
            exchange,
            routing_key,
            body,
            message_id,
            correlation_id,
            reply_to,
            dict(headers or {}),
            published_at=self.clock(),
        )
        self.published.append(message)

    async def delay(self, queue: str, delay_s: float, copy: Message) -> None:
        """A copy to the delay exchange, confirmed, then kept until the test delivers it."""
        await self.publish(topology.DELAY_EXCHANGE, queue, copy.body, headers=copy.headers)
        self.delayed.append(Delayed(queue, delay_s, copy))

    async def queue_depth(self, queue: str) -> int:
        return sum(name == queue for name, _ in self.ready)

    async def consume(self, queue: str, handle: Handler) -> FakeSubscription:
        self.consumers[queue] = handle
        return FakeSubscription(self, queue)

    async def deliver(
        self,
        queue: str,
        body: bytes,
        *,
        routing_key: str | None = None,
        deliveries: int = 0,
        headers: Mapping[str, Any] | None = None,
        message_id: str | None = None,
        correlation_id: str | None = None,
        reply_to: str | None = None,
    ) -> FakeDelivery:
        """A message put on `queue` (as published to its exchange), handed to its consumer."""
        key = routing_key if routing_key is not None else DEFAULT_ROUTING_KEYS.get(queue, queue)
        message = Message(
            "", key, body, message_id, correlation_id, reply_to, dict(headers or {}), deliveries
        )
        return await self.hand(queue, message)

    async def hand(self, queue: str, message: Message) -> FakeDelivery:
        delivery = FakeDelivery(self, queue, message)
        self.deliveries.append(delivery)
        await self.consumers[queue](delivery)
        return delivery

    async def next_delayed(self) -> FakeDelivery:
        """The oldest delayed copy, its delay over, handed to its consumer."""
        delayed = self.delayed.pop(0)
        return await self.hand(delayed.queue, delayed.message)

    async def next_ready(self) -> FakeDelivery:
        """The oldest released message, redelivered at once."""
        queue, message = self.ready.pop(0)
        return await self.hand(queue, message)

    def on(self, exchange: str) -> list[Message]:
        """What was published (and confirmed) to `exchange`."""
        return [m for m in self.published if m.exchange == exchange]

    def dead_letters(self) -> list[Message]:
        return self.on(topology.DEAD_LETTER_EXCHANGE)

    def unsettled(self) -> list[FakeDelivery]:
        return [d for d in self.deliveries if not d.settlements]


def _typecheck(
    broker: FakeBroker, delivery: FakeDelivery
) -> tuple[Broker, Delivery, DeadLetterLog]:
    return broker, delivery, broker.dead_letter_log  # mypy keeps the fakes in step with the port
