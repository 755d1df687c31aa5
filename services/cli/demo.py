"""`redeem demo`: load a running system as real callers would, then check the invariants.

It creates a personal campaign of 10,000 codes, a shared code, and a campaign
fulfilled asynchronously by the simulated partner `redeem up` runs (which
fails one attempt in five: those are retried), and sends redemptions over
HTTP and AMQP: single redemptions, duplicates of the same request, unknown,
inactive and invalidated codes, and many users racing for the same codes. It
listens to `redemption.events` all along, and ends by checking, on the
stored data and the events received, that no code was redeemed twice, that
every accepted request ended, and that every change produced one event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import statistics
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from services.cli.errors import CliError
from services.cli.up import PARTNER_HANDLER
from shared import topology

CONCURRENCY = 128
TRANSPORT_RETRIES = 4
REWARD = {"reward": {"item": "gems", "quantity": 100}}
TERMINAL = {"Redeemed", "Failed", "Rejected"}
FAILED = ("Failed", 40751)  # the partner refused every attempt
# Fulfilled over AMQP by the simulated partner, which answers later (async-response).
PARTNER_FULFILLMENT = {
    "handler": PARTNER_HANDLER,
    "handlerTransport": "amqp",
    "async": True,
    "timeout": 10,
    "pollInterval": 5,
    "maxRetries": 3,
    "retryBackoff": {"initial": 0.5, "max": 2},
}
# A worker killed mid-call leaves its attempt to time out and be retried by another.
FULFILLMENT = {
    "handler": "grant-reward",
    "timeout": 5,
    "maxRetries": 2,
    "retryBackoff": {"initial": 0.5, "max": 2},
}


@dataclass(frozen=True)
class Plan:
    """How many codes in each role; the rest of the inventory is left untouched."""

    codes: int = 10_000
    inactive: int = 500
    invalidated: int = 500
    over_http: int = 2_000
    over_amqp: int = 1_000
    raced: int = 100
    racers: int = 20
    duplicates: int = 300
    unknown: int = 200
    shared_max: int = 500
    shared_users: int = 1_000
    partner: int = 300


@dataclass
class Attempt:
    """One redemption request and what came of it."""

    via: str
    user: str
    scan: str
    expect: str
    code_type: str = ""
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    redemption_id: str | None = None
    status: str | None = None
    reason: int | None = None
    latency_s: float | None = None


@dataclass
class Demo:
    http: httpx.AsyncClient
    connection: AbstractRobustConnection
    console: Console
    plan: Plan
    campaign: str = field(default_factory=lambda: f"demo-{uuid.uuid4().hex[:8]}")
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    replies: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    event_arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def scan(self, n: int) -> str:
        return f"{self.campaign[5:].upper()}-{n:05d}"

    @property
    def shared(self) -> str:
        return self.campaign + "-shared"

    @property
    def parcels(self) -> str:
        return self.campaign + "-parcels"

    def parcel(self, n: int) -> str:
        return f"P{self.campaign[5:].upper()}-{n:04d}"

    @property
    def shared_scan(self) -> str:
        return f"FANS-{self.campaign[5:].upper()}"

    async def listen(self) -> str:
        """Bind our queues: events from the start, and replies to our AMQP commands."""
        channel = await self.connection.channel()
        events = await channel.declare_queue(exclusive=True, auto_delete=True)
        await events.bind(topology.EVENTS_EXCHANGE, routing_key="code.#")
        await events.consume(self._on_event, no_ack=True)
        replies = await channel.declare_queue(exclusive=True, auto_delete=True)
        await replies.consume(self._on_reply, no_ack=True)
        return replies.name

    async def _on_event(self, message: AbstractIncomingMessage) -> None:
        body = json.loads(message.body)
        if body["code"]["codeType"] in (self.campaign, self.shared, self.parcels):
            self.events[body["eventId"]] = body
            self.event_arrived.set()

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        future = self.replies.pop(message.correlation_id or "", None)
        if future and not future.done():
            future.set_result(json.loads(message.body))

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

    async def setup(self) -> None:
        created = await self.call(
            "POST", "/v1/campaigns", json={"codeType": self.campaign, **FULFILLMENT}
        )
        if created.status_code != 201:
            raise CliError(f"could not create the demo campaign: {created.text}")
        p = self.plan
        shared = {
            "codeType": self.shared,
            "codeUseType": "MULTI",
            "scanCode": self.shared_scan,
            "maxRedemptions": p.shared_max,
            "customCodeInfo": REWARD,
            **FULFILLMENT,
        }
        created = await self.call("POST", "/v1/campaigns", json=shared)
        if created.status_code != 201:
            raise CliError(f"could not create the shared demo campaign: {created.text}")

        async def add(n: int) -> None:
            state = "Inactive" if n < p.inactive else "Available"
            body = {"scanCode": self.scan(n), "codeState": state, "customCodeInfo": REWARD}
            answer = await self.call("POST", f"/v1/campaigns/{self.campaign}/codes", json=body)
            retried = answer.status_code == 409 and answer.json()["reasonCode"] == 90410
            if answer.status_code != 201 and not retried:
                raise CliError(f"could not add a code: {answer.text}")

        async def invalidate(n: int) -> None:
            path = f"/v1/campaigns/{self.campaign}/codes/{self.scan(n)}/invalidate"
            await self.call("POST", path, json={"invalidationReason": "reported stolen"})

        parcels = {"codeType": self.parcels, **PARTNER_FULFILLMENT}
        created = await self.call("POST", "/v1/campaigns", json=parcels)
        if created.status_code != 201:
            raise CliError(f"could not create the partner's demo campaign: {created.text}")

        async def add_parcel(n: int) -> None:
            body = {"scanCode": self.parcel(n), "codeState": "Available"}
            answer = await self.call("POST", f"/v1/campaigns/{self.parcels}/codes", json=body)
            if answer.status_code not in (201, 409):
                raise CliError(f"could not add a code: {answer.text}")

        await self.bounded("loading codes", [add(n) for n in range(p.codes)])
        await self.bounded("loading parcels", [add_parcel(n) for n in range(p.partner)])
        first = p.inactive
        await self.bounded(
            "invalidating codes", [invalidate(n) for n in range(first, first + p.invalidated)]
        )

    async def bounded(self, what: str, work: list[Awaitable[None]]) -> None:
        gate = asyncio.Semaphore(CONCURRENCY)

        async def run(job: Awaitable[None]) -> None:
            async with gate:
                await job
            progress.advance(task)

        with Progress(console=self.console, transient=True) as progress:
            task = progress.add_task(what, total=len(work))
            await asyncio.gather(*(run(job) for job in work))

    def attempts(self) -> list[Attempt]:
        p = self.plan
        n = p.inactive + p.invalidated
        plan: list[Attempt] = []
        plan += [
            Attempt("http", "inactive-user", self.scan(i), "rejected:40398")
            for i in range(0, p.inactive, max(1, p.inactive // 200))
        ]
        plan += [
            Attempt("amqp", "thief", self.scan(i), "rejected:40400")
            for i in range(p.inactive, n, max(1, p.invalidated // 200))
        ]
        singles = [
            Attempt("http", f"user-h{i}", self.scan(n + i), "redeemed") for i in range(p.over_http)
        ]
        plan += singles
        plan += [
            Attempt("amqp", f"user-a{i}", self.scan(n + p.over_http + i), "redeemed")
            for i in range(p.over_amqp)
        ]
        first_raced = n + p.over_http + p.over_amqp
        plan += [
            Attempt(
                "http" if r % 2 else "amqp",
                f"racer-{c}-{r}",
                self.scan(first_raced + c),
                f"race:{c}",
            )
            for c in range(p.raced)
            for r in range(p.racers)
        ]
        plan += [
            Attempt(a.via, a.user, a.scan, f"duplicate:{a.request_id}", request_id=a.request_id)
            for a in singles[: p.duplicates]
        ]
        plan += [
            Attempt("http", f"guesser-{i}", f"NOPE-{i:05d}", "rejected:40395")
            for i in range(p.unknown)
        ]
        plan += [
            Attempt(
                "http" if i % 2 else "amqp", f"fan-{i}", self.shared_scan, "shared", self.shared
            )
            for i in range(p.shared_users)
        ]
        plan += [
            Attempt(
                "http" if i % 2 else "amqp", f"buyer-{i}", self.parcel(i), "partner", self.parcels
            )
            for i in range(p.partner)
        ]
        random.shuffle(plan)
        return plan

    async def redeem(self, attempt: Attempt, reply_queue: str) -> None:
        body = {
            "userId": attempt.user,
            "scanCode": attempt.scan,
            "codeType": attempt.code_type or self.campaign,
            "requestId": attempt.request_id,
        }
        started = time.perf_counter()
        if attempt.via == "http":
            outcome = await self._over_http(body)
        else:
            outcome = await self._over_amqp(body, reply_queue)
        attempt.latency_s = time.perf_counter() - started
        attempt.redemption_id = outcome.get("redemptionId")
        attempt.status = outcome.get("status")
        attempt.reason = outcome.get("reasonCode")

    async def _over_http(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self.call("POST", "/v1/redemptions", params={"wait": 30}, json=body)
        if answer.status_code == 200:
            return {"status": "Redeemed", "redemptionId": answer.json()["redemptionId"]}
        if answer.status_code == 202:
            return await self.settled(answer.json()["redemptionId"])
        error = answer.json()
        status = "Failed" if error["reasonCode"] in (40751, 40756) else "Rejected"
        return {
            "status": status,
            "reasonCode": error["reasonCode"],
            "redemptionId": answer.headers.get("x-redemption-id"),
        }

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
        await exchange.publish(message, topology.REDEEM_ROUTING_KEY, timeout=10)
        try:
            return await asyncio.wait_for(future, 60)
        except TimeoutError:
            raise CliError("no reply to an AMQP redemption within 60 s") from None

    _channel: aio_pika.abc.AbstractChannel | None = None

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

    async def code(self, scan: str, code_type: str = "") -> dict[str, Any]:
        path = f"/v1/campaigns/{code_type or self.campaign}/codes/{scan}"
        return dict((await self.call("GET", path)).json())


def summary(attempts: list[Attempt], elapsed_s: float, console: Console) -> None:
    table = Table(title="Outcomes")
    for column in ("status", "reason code", "requests"):
        table.add_column(column)
    for (status, reason), count in sorted(
        Counter((a.status or "?", a.reason or 0) for a in attempts).items(), key=str
    ):
        table.add_row(status, str(reason or ""), str(count))
    console.print(table)
    latencies = sorted(a.latency_s or 0 for a in attempts)
    q = statistics.quantiles(latencies, n=100)
    rate = len(attempts) / elapsed_s
    console.print(
        f"{len(attempts)} requests in {elapsed_s:.1f} s, {rate:.0f} per second;"
        f" latency p50 {q[49] * 1000:.0f} ms, p95 {q[94] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms"
    )


Check = tuple[str, bool, str]


async def check_invariants(demo: Demo, attempts: list[Attempt]) -> list[Check]:
    checks: list[Check] = [expectations_met(attempts, demo.plan.shared_max)]
    accepted = {a.redemption_id for a in attempts if a.redemption_id}
    records = await gather_bounded([demo.settled(r) for r in accepted])
    unfinished = [r["redemptionId"] for r in records if r.get("status") not in TERMINAL]
    checks.append(
        (
            "every accepted request ended",
            not unfinished,
            f"{len(accepted)} redemptions, {len(unfinished)} not terminal",
        )
    )
    personal = [a for a in attempts if a.code_type != demo.shared]
    touched = sorted({(a.scan, a.code_type) for a in personal if not a.scan.startswith("NOPE")})
    codes = await gather_bounded([demo.code(scan, code_type) for scan, code_type in touched])
    checks.append(never_twice(demo, attempts, codes))
    shared_redeemed = sum(1 for a in attempts if a.expect == "shared" and a.status == "Redeemed")
    checks.append(await one_event_per_change(demo, codes, shared_redeemed))
    return checks


def never_twice(demo: Demo, attempts: list[Attempt], codes: list[dict[str, Any]]) -> Check:
    """By the stored history, by the outcomes callers got, and by the events."""
    stored = [c["scanCode"] for c in codes if _count(c.get("history", []), "succeed") > 1]
    won: defaultdict[tuple[str, str], set[str | None]] = defaultdict(set)
    for a in attempts:
        if a.status == "Redeemed":  # a shared code: once per user
            won[(a.scan, a.user if a.code_type == demo.shared else "")].add(a.redemption_id)
    answered = [scan for (scan, _), ids in won.items() if len(ids) > 1]
    redeemed = Counter(
        e["code"]["redemptionCodeId"]
        for e in demo.events.values()
        if e["eventType"] == "CodeRedeemed"
    )
    evented = [code for code, n in redeemed.items() if n > 1]
    twice = stored + answered + evented
    return (
        "no code redeemed twice",
        not twice,
        f"{len(codes)} codes, {sum(redeemed.values())} redeemed; {len(twice)} twice",
    )


def _count(history: list[dict[str, Any]], action: str) -> int:
    return sum(1 for h in history if h["action"] == action)


def expectations_met(attempts: list[Attempt], shared_max: int) -> Check:
    wrong: list[str] = []
    fans = [a for a in attempts if a.expect == "shared"]
    shared_won = sum(1 for a in fans if a.status == "Redeemed")
    if shared_won != min(shared_max, len(fans)):
        wrong.append(f"{shared_won} users redeemed the shared code, not {shared_max}")
    wrong += [
        f"fan {a.user}: {a.status} {a.reason}"
        for a in fans
        if a.status != "Redeemed" and a.reason != 40778
    ]
    originals = {a.request_id: a for a in attempts if not a.expect.startswith("duplicate")}
    race_winners: dict[str, set[str | None]] = defaultdict(set)
    for a in attempts:
        kind, _, detail = a.expect.partition(":")
        if kind == "redeemed" and a.status != "Redeemed":
            wrong.append(f"{a.scan} by {a.user}: {a.status} {a.reason}")
        elif kind == "rejected" and (a.status, a.reason) != ("Rejected", int(detail)):
            wrong.append(f"{a.scan}: {a.status} {a.reason}, expected {detail}")
        elif kind == "partner" and (a.status, a.reason) not in (("Redeemed", None), FAILED):
            wrong.append(f"{a.scan} (partner): {a.status} {a.reason}")
        elif kind == "duplicate" and a.redemption_id != originals[detail].redemption_id:
            wrong.append(f"{a.scan}: a repeated request got another redemption")
        elif kind == "race":
            if a.status == "Redeemed":
                race_winners[a.scan].add(a.redemption_id)
            elif a.reason != 40403:
                wrong.append(f"{a.scan} race: {a.status} {a.reason}")
    raced = {a.scan for a in attempts if a.expect.startswith("race")}
    wrong += [f"{s}: {len(race_winners[s])} winners" for s in raced if len(race_winners[s]) != 1]
    return (
        "every request got the outcome it should",
        not wrong,
        "; ".join(wrong[:3]) or f"{len(attempts)} requests as expected",
    )


async def one_event_per_change(
    demo: Demo, codes: list[dict[str, Any]], shared_redeemed: int
) -> Check:
    """Personal codes: one event per entry of their history. Shared instances, whose
    history callers do not read: one event per version, ending redeemed."""
    changes = {c["redemptionCodeId"]: len(c.get("history", [])) for c in codes}

    def mismatched() -> list[str]:
        seen: Counter[str] = Counter(e["code"]["redemptionCodeId"] for e in demo.events.values())
        versions: defaultdict[str, dict[int, str]] = defaultdict(dict)
        for e in demo.events.values():
            if e["code"]["codeType"] == demo.shared:
                versions[e["code"]["redemptionCodeId"]][e["code"]["version"]] = e["eventType"]
        wrong = [code for code, n in changes.items() if seen[code] != n]
        wrong += [
            code
            for code, by_version in versions.items()
            if seen[code] != len(by_version)
            or sorted(by_version) != list(range(2, max(by_version) + 1))
            or by_version[max(by_version)] != "CodeRedeemed"
        ]
        return wrong + (["shared instances"] if len(versions) != shared_redeemed else [])

    deadline = time.monotonic() + 30
    while mismatched() and time.monotonic() < deadline:
        demo.event_arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(demo.event_arrived.wait(), deadline - time.monotonic())
    wrong = mismatched()
    total = sum(changes.values()) + sum(
        1 for e in demo.events.values() if e["code"]["codeType"] == demo.shared
    )
    return (
        "one event per change",
        not wrong,
        f"{total} changes, {len(demo.events)} distinct events; {len(wrong)} codes differ",
    )


async def gather_bounded(work: Iterable[Awaitable[Any]]) -> list[Any]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def run(job: Awaitable[Any]) -> Any:
        async with gate:
            return await job

    return list(await asyncio.gather(*(run(job) for job in work)))


async def run_demo(
    url: str, admin_key: str, rabbitmq_url: str, console: Console, plan: Plan = Plan()
) -> bool:
    try:
        connection = await aio_pika.connect_robust(rabbitmq_url)
    except OSError as exc:
        raise CliError(f"cannot reach RabbitMQ at {rabbitmq_url}: {exc}") from None
    headers = {"Authorization": f"Bearer {admin_key}"}
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=90, limits=limits) as http:
        demo = Demo(http, connection, console, plan)
        try:
            return await _run(demo)
        except httpx.HTTPError as exc:
            raise CliError(f"the system at {url} did not answer: {exc!r}") from None
        finally:
            await connection.close()


async def _run(demo: Demo) -> bool:
    console = demo.console
    reply_queue = await demo.listen()
    console.print(f"Campaign [bold]{demo.campaign}[/]: loading {demo.plan.codes:,} codes")
    await demo.setup()
    attempts = demo.attempts()
    console.print(f"Sending {len(attempts):,} redemptions over HTTP and AMQP")
    elapsed = await demo.load(attempts, reply_queue)
    summary(attempts, elapsed, console)
    checks = await check_invariants(demo, attempts)
    for name, ok, detail in checks:
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        console.print(f"{mark} {name}: {detail}")
    return all(ok for _, ok, _ in checks)
