"""The broker port on aio-pika: one connection, a confirming channel to publish on and
one to consume from; the dead-letter log read on a channel of its own."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from aio_pika.exceptions import PublishError

from shared import topology
from shared.adapters.rabbitmq.deadletters import Newest, read_log
from shared.adapters.rabbitmq.declare import declare
from shared.adapters.rabbitmq.delivery import RabbitDelivery
from shared.clock import Clock, utcnow
from shared.ports.broker import DeadLetter, Handler, Unroutable

log = structlog.get_logger()


class Broker:
    """One connection; a confirming channel for publishing, one for consuming.

    The connection comes back by itself after the broker went away, and so do its
    channels, most of the time. A channel that the connection failed to restore would
    stop the process for good, so a publishing channel found closed on an open
    connection is replaced, and so is a consuming channel, its consumers with it (a
    watchdog looks every second).
    """

    def __init__(
        self,
        connection: AbstractRobustConnection,
        publishing: AbstractRobustChannel,
        consuming: AbstractChannel,
        *,
        publish_timeout_s: float,
        prefetch: int = 32,
        dead_letters_timeout_s: float = 10.0,
        clock: Clock = utcnow,
    ) -> None:
        self.connection = connection
        self._publishing = publishing
        self._replacing = asyncio.Lock()
        self.consuming = consuming
        self._prefetch = prefetch
        self._subscriptions: list[_Subscription] = []
        self._publish_timeout_s = publish_timeout_s
        self._exchanges: dict[str, AbstractExchange] = {"": publishing.default_exchange}
        self._watchdog: asyncio.Task[None] | None = None
        self.dead_letters_timeout_s = dead_letters_timeout_s
        self._clock = clock

    @classmethod
    async def connect(
        cls, url: str, *, prefetch: int = 32, publish_timeout_s: float = 5.0, name: str = "redeem"
    ) -> Broker:
        connection = await aio_pika.connect_robust(url, client_properties={"connection_name": name})
        publishing = await connection.channel(publisher_confirms=True, on_return_raises=True)
        consuming = await connection.channel()
        await consuming.set_qos(prefetch_count=prefetch)
        broker = cls(
            connection,
            publishing,
            consuming,
            publish_timeout_s=publish_timeout_s,
            prefetch=prefetch,
        )
        broker._watchdog = asyncio.create_task(broker._watch_consuming())
        return broker

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        await self.connection.close()

    async def ping(self) -> None:
        """Raise unless both channels are open (replacing a publishing channel left closed)."""
        if not self.connection.connected.is_set() or self.consuming.is_closed:
            raise ConnectionError("the broker connection is closed")
        await self._open_publishing()

    async def queue_depth(self, queue: str) -> int:
        """On a channel of its own: a queue that is not there closes the channel it was
        asked about on."""
        channel = await self.connection.channel()
        try:
            declared = await channel.declare_queue(queue, passive=True)
            return int(declared.declaration_result.message_count or 0)
        finally:
            # Closed for good whatever happened: a robust channel the broker closed (a
            # queue not there) reopens itself, and would stay open.
            with contextlib.suppress(Exception):
                await channel.close()

    async def dead_letters(self, since: datetime, limit: int) -> list[DeadLetter]:
        """The newest `limit` dead letters at or after `since`, newest first, read off the
        dead-letter log (the queue keeps every message) up to a marker published first.

        On a channel of its own, closed after whatever happens; bounded as a whole by
        `dead_letters_timeout_s`, past which it raises TimeoutError.
        """
        wanted = Newest(since, limit)
        channel: AbstractChannel | None = None
        bound = asyncio.timeout(self.dead_letters_timeout_s)
        try:
            async with bound:  # opening the channel too: a blocked broker is waited on here
                channel = await self.connection.channel()
                return await read_log(channel, wanted, self._mark_log, now=self._clock())
        except TimeoutError as exc:
            if not bound.expired():
                raise  # the marker's publish not confirmed: its own error says so
            raise TimeoutError(
                f"the dead-letter log {topology.DEAD_LETTER_LOG!r} was not read to its end "
                f"within {self.dead_letters_timeout_s} s (its marker did not come back: is "
                "the broker slow, or its clock more than a minute behind?)"
            ) from exc
        finally:
            if channel is not None:
                with contextlib.suppress(Exception):
                    await channel.close()

    async def _mark_log(self, marker: str) -> None:
        """A marker straight to the log, by the default exchange: the dead-letter queue
        never sees it."""
        headers = {topology.DEAD_LETTER_LOG_MARKER_HEADER: marker}
        await self.publish("", topology.DEAD_LETTER_LOG, b"", headers=headers)

    async def declare_topology(self, *, max_deliveries: int) -> None:
        """Declare every exchange, queue and binding, the delay queues too; idempotent.

        On a channel of its own, closed after: the topology is durable, and a channel
        that must declare a dozen queues again on every reconnect is a channel that
        can fail to come back.
        """
        channel = await self.connection.channel()
        try:
            await declare(channel, max_deliveries=max_deliveries)
        finally:
            await channel.close()

    async def queue(self, name: str) -> AbstractQueue:
        """A declared queue, on the consuming channel."""
        return await self.consuming.get_queue(name, ensure=True)

    async def consume(self, queue: str, handle: Handler) -> _Subscription:
        """Hand each message of `queue` to `handle` as a delivery to settle (manual acks),
        in a task of its own."""

        async def on_message(message: AbstractIncomingMessage) -> None:
            await handle(RabbitDelivery(message, queue, self))

        return await self._subscribe(_Subscription(queue, on_message))

    async def consume_replies(
        self, on_reply: Callable[[AbstractIncomingMessage], Awaitable[None]]
    ) -> _Subscription:
        """A queue of this connection's own for the replies it waits for (exclusive, no
        acks), consumed by `on_reply`; send `reply_to` its current `queue_name`.

        A reply in flight when the connection or its channel is lost is lost with it:
        whoever waits for it times out, as they would without an answer."""
        return await self._subscribe(_Subscription(None, on_reply))

    async def _subscribe(self, subscription: _Subscription) -> _Subscription:
        await subscription.start(self.consuming)
        self._subscriptions.append(subscription)
        return subscription

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
        """Publish persistently, stamped with the time (the `timestamp` property, which
        tells when a dead letter was dead-lettered), and wait for the broker's confirm.

        Raises `Unroutable` when a mandatory message reaches no queue, ConnectionError
        while the broker is away, and TimeoutError or DeliveryError when the broker
        does not confirm it.
        """
        message = aio_pika.Message(
            body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message_id,
            correlation_id=correlation_id,
            reply_to=reply_to,
            headers=dict(headers or {}),
            timestamp=self._clock(),
        )
        # Bounded as a whole, as a robust channel waits for its connection to come back
        # before it sends: `publish_timeout_s` for a closed channel to come back (see
        # `_open_publishing`), as long again for the broker to confirm.
        async with asyncio.timeout(2 * self._publish_timeout_s):
            channel = await self._open_publishing()
            target = self._exchanges.get(exchange)
            if target is None:
                target = await channel.get_exchange(exchange, ensure=False)
                self._exchanges[exchange] = target
            try:
                await target.publish(
                    message, routing_key, mandatory=mandatory, timeout=self._publish_timeout_s
                )
            except PublishError as exc:
                raise Unroutable(f"{exchange or '(default)'} -> {routing_key}") from exc

    async def _open_publishing(self) -> AbstractRobustChannel:
        """The publishing channel, open; raises ConnectionError while the broker is away.

        A closed channel on a connection that is back gets `publish_timeout_s` to be
        restored; after that, a new channel replaces it.
        """
        if not self._publishing.is_closed:
            return self._publishing
        if self.connection.is_closed or not self.connection.connected.is_set():
            raise ConnectionError("the broker is away; the connection is coming back")
        async with self._replacing:
            channel = self._publishing
            if not channel.is_closed:
                return channel
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._publish_timeout_s):
                    await channel.ready()
            if not channel.is_closed:
                return channel
            log.warning("publishing channel not restored with its connection; opening another")
            fresh = await self.connection.channel(publisher_confirms=True, on_return_raises=True)
            self._publishing = fresh
            self._exchanges = {"": fresh.default_exchange}
            with contextlib.suppress(Exception):
                await channel.close()
            return fresh

    async def _watch_consuming(self, every_s: float = 1.0) -> None:
        """Replace a consuming channel left closed on an open connection for longer than
        `publish_timeout_s`, and consume again on the new one."""
        closed_for = 0.0
        while True:
            await asyncio.sleep(every_s)
            stuck = self.consuming.is_closed and self.connection.connected.is_set()
            closed_for = closed_for + every_s if stuck else 0.0
            if closed_for < self._publish_timeout_s:
                continue
            try:
                await self._replace_consuming()
                closed_for = 0.0
            except Exception:
                log.warning("could not replace the consuming channel; trying again", exc_info=True)

    async def _replace_consuming(self) -> None:
        log.warning("consuming channel not restored with its connection; opening another")
        old, self.consuming = self.consuming, await self.connection.channel()
        await self.consuming.set_qos(prefetch_count=self._prefetch)
        for subscription in self._subscriptions:
            if not subscription.cancelled:
                await subscription.start(self.consuming)
        with contextlib.suppress(Exception):
            await old.close()


class _Subscription:
    """A consumer of a durable queue by name (manual acks), or of a reply queue of the
    connection's own (`queue_name` None until declared; no acks): started again on a
    channel that replaces the consuming one."""

    def __init__(
        self,
        queue_name: str | None,
        on_message: Callable[[AbstractIncomingMessage], Awaitable[None]],
    ) -> None:
        self.queue_name = queue_name
        self._replies = queue_name is None
        self.on_message = on_message
        self._queue: AbstractQueue | None = None
        self._tag = ""
        self.cancelled = False

    async def start(self, channel: AbstractChannel) -> None:
        if self._replies:
            queue = await channel.declare_queue(self.queue_name, exclusive=True, auto_delete=True)
            self.queue_name = queue.name
        else:
            queue = await channel.get_queue(self.queue_name or "", ensure=True)
        self._tag = await queue.consume(self.on_message, no_ack=self._replies)
        self._queue = queue

    async def cancel(self) -> None:
        self.cancelled = True
        if self._queue is not None:
            await self._queue.cancel(self._tag)
