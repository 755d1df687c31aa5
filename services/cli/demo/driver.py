"""Sends load over HTTP and AMQP as callers do, and collects what came back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from rich.console import Console
from rich.progress import Progress

from services.cli.errors import CliError
from shared import topology

CONCURRENCY = 32
PUBLISH_TRIES = 3
TRANSPORT_RETRIES = 4
TERMINAL = {"Redeemed", "Failed", "Rejected"}


@dataclass
class Attempt:
    """One redemption request and what came of it."""

    via: str
    user: str
    scan: str
    expect: str
    code_type: str
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    redemption_id: str | None = None
    status: str | None = None
    reason: int | None = None
    latency_s: float | None = None

    @property
    def body(self) -> dict[str, Any]:
        return {
            "userId": self.user,
            "scanCode": self.scan,
            "codeType": self.code_type,
            "requestId": self.request_id,
        }

    def record(self, outcome: dict[str, Any], started: float) -> None:
        self.latency_s = time.perf_counter() - started
        self.redemption_id = outcome.get("redemptionId")
        self.status = outcome.get("status")
        self.reason = outcome.get("reasonCode")


@dataclass
class Driver:
    """A running system as its callers see it: its API, its AMQP commands, its events."""

    http: httpx.AsyncClient
    connection: AbstractRobustConnection
    console: Console
    code_types: Collection[str]  # the campaigns whose events are kept
    concurrency: int = CONCURRENCY
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    replies: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    event_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _channel: aio_pika.abc.AbstractChannel | None = None

    async def listen(self, routing_key: str = "code.#") -> str:
        """Bind our queues: events from the start, and replies to our AMQP commands."""
        channel = await self.connection.channel()
        events = await channel.declare_queue(exclusive=True, auto_delete=True)
        await events.bind(topology.EVENTS_EXCHANGE, routing_key=routing_key)
        await events.consume(self._on_event, no_ack=True)
        replies = await channel.declare_queue(exclusive=True, auto_delete=True)
        await replies.consume(self._on_reply, no_ack=True)
        return replies.name

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        body = json.loads(message.body)
        if body["code"]["codeType"] in self.code_types:
            self.events[body["eventId"]] = body
            self.event_arrived.set()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self.replies.pop(message.correlation_id or "", None)
        if future and not future.done():
            future.set_result(json.loads(message.body))

    async def until(self, done: Callable[[], bool], timeout_s: float) -> bool:
        """Whether `done()` holds by the deadline, asked again as events arrive."""
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            self.event_arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event_arrived.wait(), deadline - time.monotonic())
        return done()

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One API call; a dropped connection is retried, as every call here is idempotent."""
        for attempt in range(TRANSPORT_RETRIES):
            try:
                answer = await self.http.request(method, path, **kwargs)
                break
            except httpx.TransportError:
                if attempt == TRANSPORT_RETRIES - 1:
                    raise
                await asyncio.sleep(0.2 * 2**attempt)
        if answer.status_code in (401, 403):
            raise CliError(f"the system refused the admin key: {answer.json()['message']}")
        return answer

    async def bounded(self, what: str, work: list[Awaitable[None]]) -> None:
        gate = asyncio.Semaphore(self.concurrency)

        async def run(job: Awaitable[None]) -> None:
            async with gate:
                await job
            progress.advance(task)

        with Progress(console=self.console, transient=True) as progress:
            task = progress.add_task(what, total=len(work))
            await asyncio.gather(*(run(job) for job in work))

    async def redeem(self, attempt: Attempt, reply_queue: str) -> None:
        """Send `attempt` the way it names, and wait for its outcome."""
        started = time.perf_counter()
        if attempt.via == "http":
            outcome = await self._over_http(attempt.body)
        else:
            outcome = await self._over_amqp(attempt.body, reply_queue)
        attempt.record(outcome, started)

    async def submit(self, attempt: Attempt) -> None:
        """Send `attempt` over HTTP without waiting: once accepted it is "Pending", and the
        events tell its outcome."""
        started = time.perf_counter()
        attempt.record(await self._over_http(attempt.body, wait_s=0), started)

    async def _over_http(self, body: dict[str, Any], wait_s: float = 30) -> dict[str, Any]:
        params = {"wait": wait_s} if wait_s else {}
        answer = await self.call("POST", "/v1/redemptions", params=params, json=body)
        if answer.status_code == 200:
            return {"status": "Redeemed", "redemptionId": answer.json()["redemptionId"]}
        if answer.status_code == 202:
            accepted: dict[str, Any] = answer.json()
            return await self.settled(accepted["redemptionId"]) if wait_s else accepted
        return _refused(answer.json(), answer.headers.get("x-redemption-id"))

    async def _over_amqp(self, body: dict[str, Any], reply_queue: str) -> dict[str, Any]:
        correlation = uuid.uuid4().hex
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[correlation] = future
        channel = await self._publisher()
        message = aio_pika.Message(
            json.dumps(body).encode(),
            reply_to=reply_queue,
            correlation_id=correlation,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        exchange = await channel.get_exchange(topology.COMMANDS_EXCHANGE, ensure=False)
        for attempt in range(PUBLISH_TRIES):  # sent again, it is the same request: idempotent
            try:
                await exchange.publish(message, topology.REDEEM_ROUTING_KEY, timeout=30)
                break
            except TimeoutError:
                if attempt == PUBLISH_TRIES - 1:
                    raise CliError("RabbitMQ did not confirm an AMQP redemption") from None
        try:
            reply = await asyncio.wait_for(future, 60)
        except TimeoutError:
            raise CliError("no reply to an AMQP redemption within 60 s") from None
        # A redemption record, or a refusal before any redemption (an error body).
        return _refused(reply, None) if isinstance(reply.get("status"), int) else reply

    async def _publisher(self) -> aio_pika.abc.AbstractChannel:
        if self._channel is None:
            self._channel = await self.connection.channel(publisher_confirms=True)
        return self._channel

    async def settled(self, redemption_id: str, timeout_s: float = 60) -> dict[str, Any]:
        """A redemption once it is terminal (polling with a deadline)."""
        deadline = time.monotonic() + timeout_s
        while True:
            answer = await self.call("GET", f"/v1/redemptions/{redemption_id}")
            record: dict[str, Any] = answer.json() if answer.status_code == 200 else {}
            if record.get("status") in TERMINAL or time.monotonic() > deadline:
                return record or {"redemptionId": redemption_id, "status": "unknown"}
            await asyncio.sleep(0.2)

    async def load(self, attempts: list[Attempt], reply_queue: str) -> float:
        started = time.perf_counter()
        await self.bounded("redeeming", [self.redeem(a, reply_queue) for a in attempts])
        return time.perf_counter() - started

    async def code(self, scan: str, code_type: str) -> dict[str, Any]:
        path = f"/v1/campaigns/{code_type}/codes/{scan}"
        return dict((await self.call("GET", path)).json())


async def gather_bounded(work: Iterable[Awaitable[Any]]) -> list[Any]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def run(job: Awaitable[Any]) -> Any:
        async with gate:
            return await job

    return list(await asyncio.gather(*(run(job) for job in work)))


def _refused(error: dict[str, Any], redemption_id: str | None) -> dict[str, Any]:
    """An error body as the outcome it stands for."""
    status = "Failed" if error["reasonCode"] in (40751, 40756) else "Rejected"
    return {"status": status, "reasonCode": error["reasonCode"], "redemptionId": redemption_id}
