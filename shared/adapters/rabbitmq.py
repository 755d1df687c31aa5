"""RabbitMQ on aio-pika: topology, confirmed publishing, dead-lettering."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import PublishError

from shared import topology
from shared.domain.reasons import DomainError

Headers = dict[str, Any]
log = structlog.get_logger()


def quorum_queue_arguments(max_deliveries: int) -> dict[str, Any]:
    """Durable quorum queue; after `max_deliveries` the broker dead-letters."""
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": topology.DEAD_LETTER_EXCHANGE,
        # The consumers dead-letter at `max_deliveries` themselves, with the
        # reason; the broker's limit is the backstop for crash loops.
        "x-delivery-limit": max_deliveries + 1,
    }


def delivery_count(message: AbstractIncomingMessage) -> int:
    """How many times this message was delivered before (quorum queues count)."""
    count = (message.headers or {}).get("x-delivery-count", 0)
    return int(count) if isinstance(count, int | str) else 0


class Unroutable(Exception):
    """A mandatory message that no queue was bound to receive."""


class Broker:
    """One connection; a confirming channel for publishing, one for consuming."""

    def __init__(
        self,
        connection: AbstractRobustConnection,
        publishing: AbstractChannel,
        consuming: AbstractChannel,
        *,
        publish_timeout_s: float,
    ) -> None:
        self.connection = connection
        self._publishing = publishing
        self.consuming = consuming
        self._publish_timeout_s = publish_timeout_s
        self._exchanges: dict[str, AbstractExchange] = {"": publishing.default_exchange}

    @classmethod
    async def connect(
        cls, url: str, *, prefetch: int = 32, publish_timeout_s: float = 5.0, name: str = "redeem"
    ) -> Broker:
        connection = await aio_pika.connect_robust(url, client_properties={"connection_name": name})
        publishing = await connection.channel(publisher_confirms=True, on_return_raises=True)
        consuming = await connection.channel()
        await consuming.set_qos(prefetch_count=prefetch)
        return cls(connection, publishing, consuming, publish_timeout_s=publish_timeout_s)

    async def close(self) -> None:
        await self.connection.close()

    async def ping(self) -> None:
        """Raise unless the connection is open."""
        if self.connection.is_closed or self._publishing.is_closed:
            raise ConnectionError("the broker connection is closed")

    async def declare_topology(self, *, max_deliveries: int) -> None:
        """Declare every exchange, queue and binding; idempotent."""
        ch = self._publishing
        x = aio_pika.ExchangeType
        await ch.declare_exchange(topology.DEAD_LETTER_EXCHANGE, x.FANOUT, durable=True)
        dead = await ch.declare_queue(
            topology.DEAD_LETTER_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await dead.bind(topology.DEAD_LETTER_EXCHANGE, routing_key="#")
        for name, kind in (
            (topology.COMMANDS_EXCHANGE, x.TOPIC),
            (topology.EVENTS_EXCHANGE, x.TOPIC),
            (topology.FULFILLMENT_EXCHANGE, x.DIRECT),
            (topology.WORK_EXCHANGE, x.DIRECT),
        ):
            await ch.declare_exchange(name, kind, durable=True)
        args = quorum_queue_arguments(max_deliveries)
        work = await ch.declare_queue(topology.WORK_QUEUE, durable=True, arguments=args)
        await work.bind(topology.WORK_EXCHANGE, routing_key=topology.REDEEM_ROUTING_KEY)
        jobs = await ch.declare_queue(topology.JOBS_QUEUE, durable=True, arguments=args)
        await jobs.bind(topology.WORK_EXCHANGE, routing_key=topology.JOB_ROUTING_KEY)
        intake = await ch.declare_queue(topology.INTAKE_QUEUE, durable=True, arguments=args)
        await intake.bind(topology.COMMANDS_EXCHANGE, routing_key=topology.REDEEM_ROUTING_KEY)
        await intake.bind(
            topology.COMMANDS_EXCHANGE, routing_key=topology.ASYNC_RESPONSE_ROUTING_KEY
        )

    async def queue(self, name: str) -> AbstractQueue:
        """A declared queue, on the consuming channel."""
        return await self.consuming.get_queue(name, ensure=True)

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
        headers: Headers | None = None,
    ) -> None:
        """Publish persistently and wait for the broker's confirm.

        Raises `Unroutable` when a mandatory message reaches no queue, and
        TimeoutError or DeliveryError when the broker does not confirm it.
        """
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            correlation_id=correlation_id,
            reply_to=reply_to,
            headers=headers or {},
        )
        target = self._exchanges.get(exchange)
        if target is None:
            target = await self._publishing.get_exchange(exchange, ensure=False)
            self._exchanges[exchange] = target
        try:
            await target.publish(
                message, routing_key, mandatory=mandatory, timeout=self._publish_timeout_s
            )
        except PublishError as exc:
            raise Unroutable(f"{exchange or '(default)'} -> {routing_key}") from exc

    async def dead_letter(self, message: AbstractIncomingMessage, error: DomainError) -> None:
        """Move a message to the dead-letter exchange with the reason, then ack it."""
        headers: Headers = dict(message.headers or {})
        headers[topology.DEAD_LETTER_REASON_HEADER] = (
            f"{int(error.reason)} {error.reason.name}: {error.message}"[:1000]
        )
        headers[topology.DEAD_LETTER_REASON_CODE_HEADER] = int(error.reason)
        headers["x-original-exchange"] = message.exchange or ""
        headers["x-original-routing-key"] = message.routing_key or ""
        await self.publish(
            topology.DEAD_LETTER_EXCHANGE,
            message.routing_key or "",
            message.body,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            reply_to=message.reply_to,
            headers=headers,
        )
        await message.ack()


class Consumer(ABC):
    """Consumes one queue with manual acks, one task a message; `stop()` stops taking
    messages and waits for those in hand, so that a shutdown finishes its work."""

    def __init__(self, broker: Broker, queue: str) -> None:
        self._broker = broker
        self._queue_name = queue
        self._queue: AbstractQueue | None = None
        self._tag: str | None = None
        self._in_flight: set[asyncio.Task[Any]] = set()

    @abstractmethod
    async def handle(self, message: AbstractIncomingMessage) -> None:
        """Ack, nack or dead-letter `message`: every consumer states its policy."""

    async def start(self) -> None:
        self._queue = await self._broker.queue(self._queue_name)
        self._tag = await self._queue.consume(self._track)

    async def stop(self) -> None:
        if self._queue and self._tag:
            await self._queue.cancel(self._tag)
        await asyncio.gather(*self._in_flight)

    async def settle(self, message: AbstractIncomingMessage, settling: Awaitable[Any]) -> None:
        """Ack, nack or dead-letter `message`; should the broker not take that, requeue
        it (a closed channel requeues it anyway), so no message stays unsettled."""
        try:
            await settling
        except Exception:
            log.warning("could not settle a message; requeueing it", exc_info=True)
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)

    async def retry_later(self, message: AbstractIncomingMessage) -> None:
        """Requeue `message` after a pause that grows with its deliveries so far."""
        await asyncio.sleep(min(0.5 * 2 ** delivery_count(message), 10.0))
        await self.settle(message, message.nack(requeue=True))

    async def _track(self, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        await self.handle(message)
