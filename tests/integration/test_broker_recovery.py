"""The broker adapter after the broker went away: it publishes and consumes again."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from aio_pika.abc import AbstractIncomingMessage

from bench.faults.injectors import broker_outage
from bench.support import servers
from shared import topology
from shared.adapters.rabbitmq import Broker
from shared.ports.broker import Delivery, Unroutable
from tests.support.amqp import Tap
from tests.support.wait import eventually


async def test_a_publishing_channel_left_closed_is_replaced(broker: Broker) -> None:
    events = await Tap.on(broker, topology.EVENTS_EXCHANGE)
    # What a failed restore leaves behind: the connection open, the channel closed
    # and never to be reopened by it.
    await broker._publishing.close()

    await broker.ping()
    await broker.publish(topology.EVENTS_EXCHANGE, "code.redeemed", b"{}", message_id="after")

    assert [m.message_id for m in await events.wait_for(1)] == ["after"]
    await events.close()


async def test_a_publish_while_the_connection_is_down_fails_at_once(broker: Broker) -> None:
    await broker._publishing.close()
    broker.connection.connected.clear()  # as during a reconnect

    with pytest.raises(ConnectionError):
        await asyncio.wait_for(broker.publish(topology.EVENTS_EXCHANGE, "code.x", b"{}"), 1.0)
    with pytest.raises(ConnectionError):
        await broker.ping()
    broker.connection.connected.set()


async def test_after_the_broker_restarts_messages_flow_again(
    broker: Broker, rabbit: servers.Rabbit, amqp_url: str
) -> None:
    if not rabbit.local:
        reason = f"stops the broker's application: only the local one, not {rabbit.kind}"
        print(reason)
        pytest.skip(reason)
    received: list[str | None] = []

    async def keep(delivery: Delivery) -> None:
        received.append(delivery.message_id)
        await delivery.ack()

    await broker.consume(topology.WORK_QUEUE, keep)

    async def send(message_id: str) -> bool:
        try:
            await broker.publish(
                topology.WORK_EXCHANGE, topology.REDEEM_ROUTING_KEY, b"{}", message_id=message_id
            )
        except Exception:
            return False
        return True

    assert await send("before")
    await asyncio.to_thread(broker_outage, 2.0, amqp_url)
    await eventually(lambda: send("after"), timeout_s=60, interval_s=0.5, what="a publish")
    await broker.ping()

    async def seen() -> list[str | None]:
        return received

    await eventually(seen, until=lambda r: "after" in r, timeout_s=60, what="the message")
    assert received[0] == "before"


async def test_a_consuming_channel_left_closed_is_replaced_with_its_consumers(
    amqp_url: str,
) -> None:
    broker = await Broker.connect(amqp_url, publish_timeout_s=1.0, name="test")
    await broker.declare_topology(max_deliveries=5)
    received: list[str | None] = []

    async def keep(delivery: Delivery) -> None:
        received.append(delivery.message_id)
        await delivery.ack()

    await broker.consume(topology.WORK_QUEUE, keep)
    # What a failed restore leaves behind: the connection open, the channel closed.
    await broker.consuming.close()

    async def send() -> list[str | None]:
        await broker.publish(
            topology.WORK_EXCHANGE, topology.REDEEM_ROUTING_KEY, b"{}", message_id="after"
        )
        return received

    assert await eventually(send, until=lambda r: "after" in r, timeout_s=20, interval_s=1)
    await broker.ping()
    await broker.close()


async def test_a_reply_queue_comes_back_with_a_replaced_consuming_channel(amqp_url: str) -> None:
    broker = await Broker.connect(amqp_url, publish_timeout_s=1.0, name="test")
    replies: list[bytes] = []

    async def keep(message: AbstractIncomingMessage) -> None:
        replies.append(message.body)

    subscription = await broker.consume_replies(keep)
    reply_to = subscription.queue_name or ""
    await broker.consuming.close()

    async def answer() -> list[bytes]:
        with contextlib.suppress(Unroutable):  # until the queue is declared again
            await broker.publish("", reply_to, b"answer")
        return replies

    assert await eventually(answer, until=lambda r: b"answer" in r, timeout_s=20, interval_s=1)
    assert subscription.queue_name == reply_to, "callers keep sending to the same name"
    await broker.close()
