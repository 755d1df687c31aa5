"""The topology, declared idempotently at start: exchanges, the consumed quorum queues,
the dead-letter queue and the stream that logs its messages, and the delay queues with
the retry exchange behind them."""

from __future__ import annotations

from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel

from shared import topology

_KINDS = (
    (topology.COMMANDS_EXCHANGE, aio_pika.ExchangeType.TOPIC),
    (topology.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC),
    (topology.FULFILLMENT_EXCHANGE, aio_pika.ExchangeType.DIRECT),
    (topology.WORK_EXCHANGE, aio_pika.ExchangeType.DIRECT),
    (topology.DELAY_EXCHANGE, aio_pika.ExchangeType.HEADERS),
    (topology.RETRY_EXCHANGE, aio_pika.ExchangeType.DIRECT),
)
_BINDINGS = (
    (topology.WORK_QUEUE, topology.WORK_EXCHANGE, topology.REDEEM_ROUTING_KEY),
    (topology.JOBS_QUEUE, topology.WORK_EXCHANGE, topology.JOB_ROUTING_KEY),
    (topology.INTAKE_QUEUE, topology.COMMANDS_EXCHANGE, topology.REDEEM_ROUTING_KEY),
    (topology.INTAKE_QUEUE, topology.COMMANDS_EXCHANGE, topology.ASYNC_RESPONSE_ROUTING_KEY),
)


def quorum_queue_arguments(max_deliveries: int) -> dict[str, Any]:
    """Durable quorum queue; after `max_deliveries` the broker dead-letters."""
    return {
        "x-queue-type": "quorum",
        "x-dead-letter-exchange": topology.DEAD_LETTER_EXCHANGE,
        # The consumers dead-letter at `max_deliveries` themselves, with the
        # reason; the broker's limit is the backstop for crash loops.
        "x-delivery-limit": max_deliveries + 1,
    }


def delay_queue_arguments(delay_ms: int) -> dict[str, Any]:
    """A quorum queue that holds every message `delay_ms`, then dead-letters it to the
    retry exchange; at least once, so no retry is lost on the way back."""
    return {
        "x-queue-type": "quorum",
        "x-message-ttl": delay_ms,
        "x-dead-letter-exchange": topology.RETRY_EXCHANGE,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",  # what at-least-once dead-lettering needs
    }


def dead_letter_log_arguments() -> dict[str, Any]:
    """A stream keeping a week of dead letters, at most about 100 MB of them."""
    return {
        "x-queue-type": "stream",
        "x-max-age": topology.DEAD_LETTER_LOG_MAX_AGE,
        "x-max-length-bytes": topology.DEAD_LETTER_LOG_MAX_BYTES,
        # Retention drops whole segments: ten of them, not one of the default 500 MB
        # that would outgrow the limit before any of it could go.
        "x-stream-max-segment-size-bytes": topology.DEAD_LETTER_LOG_MAX_BYTES // 10,
    }


async def declare(channel: AbstractChannel, *, max_deliveries: int) -> None:
    """Declare every exchange, queue and binding."""
    await channel.declare_exchange(
        topology.DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.FANOUT, durable=True
    )
    dead = await channel.declare_queue(
        topology.DEAD_LETTER_QUEUE, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead.bind(topology.DEAD_LETTER_EXCHANGE, routing_key="#")
    log = await channel.declare_queue(
        topology.DEAD_LETTER_LOG, durable=True, arguments=dead_letter_log_arguments()
    )
    await log.bind(topology.DEAD_LETTER_EXCHANGE, routing_key="#")
    for name, kind in _KINDS:
        await channel.declare_exchange(name, kind, durable=True)
    args = quorum_queue_arguments(max_deliveries)
    for name in topology.RETRIED_QUEUES:
        queue = await channel.declare_queue(name, durable=True, arguments=args)
        await queue.bind(topology.RETRY_EXCHANGE, routing_key=name)
    for name, exchange, routing_key in _BINDINGS:
        queue = await channel.get_queue(name, ensure=False)
        await queue.bind(exchange, routing_key=routing_key)
    for delay_ms in topology.DELAY_STEPS_MS:
        delay = await channel.declare_queue(
            topology.delay_queue(delay_ms), durable=True, arguments=delay_queue_arguments(delay_ms)
        )
        await delay.bind(
            topology.DELAY_EXCHANGE,
            arguments={"x-match": "all", topology.DELAY_HEADER: str(delay_ms)},
        )
