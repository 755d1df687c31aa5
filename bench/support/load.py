"""A cheap load generator: HTTP/1.1 requests encoded before the run, sent over a few
keep-alive connections, and an observer of the events they lead to.

The requests are whole byte strings (request line, headers and body) made before the
measured phase, so that sending one costs a socket write; an answer is read by its
`Content-Length` (the intake's answers all have one). A connection sends its next request
once the last one is answered (no pipelining).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

HEADERS_END = b"\r\n\r\n"
ANSWER_TIMEOUT_S = 60
# The wall clock's time at perf_counter() zero: turns the services' instants into this
# process's perf_counter() times (to the wall clock's precision, a millisecond here).
EPOCH = time.time() - time.perf_counter()


def post(url: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """One HTTP/1.1 POST of a JSON `body`, encoded whole."""
    host = urllib.parse.urlsplit(url).netloc
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {host}",
        *(f"{name}: {value}" for name, value in headers.items()),
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Refused(RuntimeError):
    """An answer other than those a run expects."""


@dataclass
class Connection:
    """One keep-alive connection, sending a request and reading its answer at a time."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urllib.parse.urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        """The status and body of the answer to `request`."""
        self.writer.write(request)
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            return await self._answer()

    async def _answer(self) -> tuple[int, bytes]:
        head = await self.reader.readuntil(HEADERS_END)
        status_line, *header_lines = head[: -len(HEADERS_END)].split(b"\r\n")
        length = None
        for line in header_lines:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise Refused(f"a chunked answer, which this client does not read: {head!r}")
        if length is None:
            raise Refused(f"an answer without Content-Length: {head!r}")
        body = await self.reader.readexactly(length) if length else b""
        return int(status_line.split(b" ", 2)[1]), body

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@dataclass
class Sender:
    """Sends prepared requests over `connections` connections to `url`, and notes when
    each was accepted (answered 202, or 200), by the key it was given with."""

    url: str
    connections: int
    accepted_at: dict[str, float] = field(default_factory=dict)
    _open: list[Connection] = field(default_factory=list)

    async def __aenter__(self) -> Sender:
        self._open = [await Connection.open(self.url) for _ in range(self.connections)]
        return self

    async def __aexit__(self, *_: object) -> None:
        for connection in self._open:
            await connection.close()

    async def run(self, requests: list[tuple[str, bytes]], rate: float | None = None) -> None:
        """Send every request: each connection as soon as it is free (`rate` None), or the
        i-th request at i / `rate` seconds from the start (a fixed offered load), as soon as
        a connection is free after that."""
        taken = itertools.count()
        started = time.perf_counter()

        async def drive(connection: Connection) -> None:
            for i in taken:
                if i >= len(requests):
                    return
                if rate is not None:
                    delay = started + i / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                key, request = requests[i]
                status, body = await connection.send(request)
                if status not in (200, 202):
                    raise Refused(f"{key}: {status} {body[:300]!r}")
                self.accepted_at[key] = time.perf_counter()

        await asyncio.gather(*(drive(c) for c in self._open))


@dataclass
class Observer:
    """Notes when each event of `routing_key` on `exchange` arrives, by its `userId`, and
    when its code was redeemed."""

    connection: AbstractRobustConnection
    exchange: str
    routing_key: str
    received_at: dict[str, float] = field(default_factory=dict)
    # When the worker stored each redemption (the code's redeemedAt), on the same clock.
    redeemed_at: dict[str, float] = field(default_factory=dict)
    _expected: int = 0
    _all_in: asyncio.Event = field(default_factory=asyncio.Event)

    async def listen(self) -> None:
        channel = await self.connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(self.exchange, routing_key=self.routing_key)
        await queue.consume(self._on_event, no_ack=True)

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        event = json.loads(message.body)
        self.received_at[event["userId"]] = time.perf_counter()
        if event["code"].get("redeemedAt") is not None:
            self.redeemed_at[event["userId"]] = event["code"]["redeemedAt"] / 1000 - EPOCH
        if len(self.received_at) >= self._expected:
            self._all_in.set()

    async def until(self, count: int, timeout_s: float) -> bool:
        """Whether `count` events have arrived (in all) by the deadline."""
        self._expected = count
        if len(self.received_at) < count:
            self._all_in.clear()
            try:
                await asyncio.wait_for(self._all_in.wait(), timeout_s)
            except TimeoutError:
                return False
        return True


def percentiles(values: Iterable[float], *ranks: float) -> list[float]:
    """The nearest-rank percentiles of `values`."""
    ordered = sorted(values)
    if not ordered:
        return [float("nan")] * len(ranks)
    return [ordered[max(0, math.ceil(r / 100 * len(ordered)) - 1)] for r in ranks]
