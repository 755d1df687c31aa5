"""Listening on the broker as an observer or caller would."""

from __future__ import annotations

import json
import struct
from typing import Any

import pamqp.encode
import pytest
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue

from shared import topology
from shared.adapters.rabbitmq import Broker
from tests.support.wait import eventually


class Tap:
    """An exclusive queue bound to an exchange, keeping what arrives."""

    def __init__(self, channel: AbstractChannel, queue: AbstractQueue) -> None:
        self._channel = channel
        self.queue = queue
        self.messages: list[AbstractIncomingMessage] = []

    @classmethod
    async def on(cls, broker: Broker, exchange: str | None, routing_key: str = "#") -> Tap:
        channel = await broker.connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        if exchange is not None:
            await queue.bind(exchange, routing_key=routing_key)
        tap = cls(channel, queue)
        await queue.consume(tap._keep, no_ack=True)
        return tap

    async def _keep(self, message: AbstractIncomingMessage) -> None:
        self.messages.append(message)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(m.body) for m in self.messages]

    async def wait_for(self, count: int, timeout_s: float = 20.0) -> list[AbstractIncomingMessage]:
        async def probe() -> int:
            return len(self.messages)

        await eventually(
            probe,
            until=lambda n: n >= count,
            timeout_s=timeout_s,
            what=f"{count} messages on {self.queue.name}",
        )
        return list(self.messages)

    async def close(self) -> None:
        await self._channel.close()


async def ask(
    broker: Broker,
    command: dict[str, Any],
    correlation_id: str,
    *,
    routing_key: str = topology.REDEEM_ROUTING_KEY,
    headers: dict[str, Any] | None = None,
) -> tuple[AbstractIncomingMessage, dict[str, Any]]:
    """Send a command (`redeem` unless `routing_key` says otherwise) as an AMQP caller
    does, with a reply queue of its own, and wait for the one reply: the message, and
    its body."""
    replies = await Tap.on(broker, None)
    await broker.publish(
        topology.COMMANDS_EXCHANGE,
        routing_key,
        json.dumps(command).encode(),
        reply_to=replies.queue.name,
        correlation_id=correlation_id,
        headers=headers,
    )
    [reply] = await replies.wait_for(1)
    await replies.close()
    return reply, json.loads(reply.body)


def send_raw_strings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let a test put bytes in a header as an AMQP string, as a client that does not check
    its strings are UTF-8 does (the consumer's client hands such a string over as bytes)."""
    encode_value = pamqp.encode.encode_table_value

    def raw_or_encoded(value: Any) -> bytes:
        if isinstance(value, bytes):
            return b"S" + struct.pack(">I", len(value)) + value
        return encode_value(value)

    monkeypatch.setattr(pamqp.encode, "encode_table_value", raw_or_encoded)
