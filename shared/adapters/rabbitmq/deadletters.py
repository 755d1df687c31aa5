"""The dead-letter log: the stream beside the dead-letter queue, read up to where it
ended without taking anything off the queue, and its messages as the dead letters they
record.

A stream says nothing when a reader reaches its end, so the reader first publishes a
marker of its own straight to the stream and reads until that marker comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from shared import topology
from shared.ports.broker import DEAD_LETTER_BODY_SHOWN, DeadLetter

# The stream finds `since` by the broker's clock, which may run behind ours: reading
# starts this much earlier, and what is older than `since` is left out as it comes.
CLOCK_SKEW = timedelta(seconds=60)
PREFETCH = 100  # a stream is consumed with a prefetch, its messages acked
CANCEL_TIMEOUT_S = 5.0

Mark = Callable[[str], Awaitable[None]]
"""Publishes, confirmed, a marker naming its uuid straight to the stream."""


class Newest:
    """Of dead letters added oldest first, the newest `limit` at or after `since`."""

    def __init__(self, since: datetime, limit: int) -> None:
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        if limit < 1:
            raise ValueError("limit must be at least 1")
        # AMQP keeps time to the second; so is `since` counted.
        self.since = since.astimezone(UTC).replace(microsecond=0)
        self._kept: deque[DeadLetter] = deque(maxlen=limit)

    def add(self, letter: DeadLetter) -> None:
        if letter.at >= self.since:
            self._kept.append(letter)

    def newest_first(self) -> list[DeadLetter]:
        return list(reversed(self._kept))


async def read_log(
    channel: AbstractChannel, wanted: Newest, mark: Mark, *, now: datetime
) -> list[DeadLetter]:
    """The log read on `channel` (the reader's own, for its caller to close) from
    `wanted.since` up to a marker published now; markers are never returned."""
    await channel.set_qos(prefetch_count=PREFETCH)
    stream = await channel.declare_queue(topology.DEAD_LETTER_LOG, passive=True)
    marker = str(uuid.uuid4())
    await mark(marker)
    arrived: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    start = min(wanted.since, now) - CLOCK_SKEW  # never after the marker
    tag = await stream.consume(arrived.put, arguments={"x-stream-offset": start})
    try:
        while True:
            message = await arrived.get()
            await message.ack()
            found = _marker(message)
            if found == marker:
                return wanted.newest_first()
            if found is None:
                wanted.add(dead_letter_of(message, read_at=now))
    finally:
        with contextlib.suppress(Exception):
            await stream.cancel(tag, timeout=CANCEL_TIMEOUT_S)


def _marker(message: AbstractIncomingMessage) -> str | None:
    """The uuid a reader's marker names; None for a dead letter."""
    headers = message.headers or {}
    if topology.DEAD_LETTER_LOG_MARKER_HEADER not in headers:
        return None
    return _text(headers[topology.DEAD_LETTER_LOG_MARKER_HEADER])


def dead_letter_of(message: AbstractIncomingMessage, *, read_at: datetime) -> DeadLetter:
    return dead_letter(
        routing_key=message.routing_key or "",
        headers=message.headers or {},
        body=message.body,
        message_id=message.message_id,
        timestamp=message.timestamp,
        read_at=read_at,
    )


def dead_letter(
    *,
    routing_key: str,
    headers: Mapping[str, Any],
    body: bytes,
    message_id: str | None,
    timestamp: datetime | None,
    read_at: datetime,
) -> DeadLetter:
    """A dead letter as the service writes it (`RabbitDelivery.dead_letter`: its reason
    in headers, stamped when published), or as the broker does (its reason and time in
    `x-death` and the `x-*-death-*` headers)."""
    reason = _text(headers.get(topology.DEAD_LETTER_REASON_HEADER)) or None
    if reason is None:
        death = _last_death(headers)
        reason = _broker_reason(headers, death)
        at = _utc(death.get("time")) or _utc(timestamp) or read_at
    else:
        at = _utc(timestamp) or read_at
    return DeadLetter(
        at=at,
        routing_key=routing_key,
        reason_code=_code(headers.get(topology.DEAD_LETTER_REASON_CODE_HEADER)),
        reason=reason,
        message_id=message_id,
        body=body[:DEAD_LETTER_BODY_SHOWN],
        size=len(body),
    )


def _last_death(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    """The broker's latest dead-lettering of it: `x-death` lists the newest first."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list | tuple) and deaths and isinstance(deaths[0], Mapping):
        return deaths[0]
    return {}


def _broker_reason(headers: Mapping[str, Any], death: Mapping[str, Any]) -> str | None:
    """What the broker says, newest first: `x-last-death-*` (RabbitMQ 3.13 on), `x-death`,
    `x-first-death-*`."""
    reason = _first_text(
        headers.get("x-last-death-reason"), death.get("reason"), headers.get("x-first-death-reason")
    )
    if reason is None:
        return None
    queue = _first_text(
        headers.get("x-last-death-queue"), death.get("queue"), headers.get("x-first-death-queue")
    )
    where = f" from {queue}" if queue else ""
    return f"{reason} (dead-lettered by the broker{where})"


def _first_text(*values: object) -> str | None:
    return next((text for value in values if (text := _text(value))), None)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else ""


def _code(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = _text(value)
    return int(text) if text.isdigit() else None


def _utc(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return None
