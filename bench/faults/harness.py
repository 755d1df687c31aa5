"""The fault-injection harness: the system as OS processes, load over the public API,
a fault alongside, and the end state handed to the checker.

A run is some cycles. Each cycle makes its own campaigns (personal codes raced
by several users, with no handler and with a local one; a shared code raced by
more users than it has slots; a campaign the partner simulator fulfils
asynchronously over AMQP, failing some attempts, with retries), sends its
redemptions over HTTP (some twice with the same requestId, some waiting for
their outcome so that replies flow) while the fault runs, and ends with every
process restored. After the last cycle the checker reads the end state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aio_pika
import httpx
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from bench.faults.checker import EndState, Plan, Report, collect, judge
from bench.support.processes import ADMIN_KEY, API_KEYS, REDEEM_KEY, Service, System, system_env
from shared import topology

STORES = ("embedded", "mongodb")
PARTNER = "fault-partner"
ROLES = ("intake", "worker", "results")
TERMINAL = frozenset({"Redeemed", "Failed", "Rejected"})
# Fast recovery: a dead worker's timers are taken over after this lease.
SYSTEM_ENV = {
    "REDEEM_FULFILLMENT_LEASE_S": "2",
    "REDEEM_PUBLISH_TIMEOUT_S": "3",
    "REDEEM_LOG_LEVEL": "INFO",
}
PARTNER_ENV = {
    "REDEEM_PARTNER_HANDLER": PARTNER,
    "REDEEM_PARTNER_MODE": "async",
    "REDEEM_PARTNER_DELAY_S": "0.3",
    "REDEEM_PARTNER_FAILURE_RATE": "0.3",
    "REDEEM_PARTNER_REMEMBER": "100000",
}
RETRY_BACKOFF = {"initial": 0.2, "max": 1, "multiplier": 2}
CAMPAIGNS: Mapping[str, Mapping[str, Any]] = {
    "plain": {},
    "local": {
        "handler": "grant-reward",
        "timeout": 3,
        "maxRetries": 1,
        "retryBackoff": RETRY_BACKOFF,
    },
    "partner": {
        "handler": PARTNER,
        "handlerTransport": "amqp",
        "async": True,
        "timeout": 3,
        "pollInterval": 1,
        "maxRetries": 2,
        "retryBackoff": RETRY_BACKOFF,
    },
}
REWARD = {"reward": {"item": "gems", "quantity": 10}}


@dataclass(frozen=True)
class Size:
    """How much load a cycle sends, and how the system runs."""

    cycles: int = 1
    personal_codes: int = 5
    racers: int = 3
    local_codes: int = 3
    local_racers: int = 2
    shared_max: int = 4
    shared_users: int = 7
    partner_codes: int = 5
    duplicates: int = 4
    waiting_every: int = 4  # every n-th request waits for its outcome, so replies flow
    workers: int = 2
    settle_s: float = 40.0


@dataclass
class Request:
    kind: str
    user: str
    scan: str
    code_type: str
    request_id: str
    wait: bool = False
    redemption_id: str | None = None
    status: int | None = None


@dataclass
class Progress:
    """How far a cycle's load got; faults start part-way through it."""

    total: int
    sent: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)
    _moved: asyncio.Event = field(default_factory=asyncio.Event)

    def advance(self) -> None:
        self.sent += 1
        self._moved.set()

    def finish(self) -> None:
        self.done.set()
        self._moved.set()

    async def reached(self, fraction: float) -> None:
        while self.sent < fraction * self.total and not self.done.is_set():
            self._moved.clear()
            await self._moved.wait()


class Fault(Protocol):
    """One kind of fault, injected alongside a cycle's load."""

    name: str

    async def arm(self, run: Run) -> None:
        """Prepare the cycle `run.cycle` before its load starts (e.g. arm failpoints)."""
        ...

    async def during(self, run: Run, progress: Progress) -> int:
        """Inject while the load runs; return with every process restored (or left as the
        fault means them to be); the number of faults injected."""
        ...


class Client:
    """The public HTTP API; a dropped connection or a 5xx is tried again until a deadline
    (every call here is idempotent: redemptions carry their requestId)."""

    def __init__(self, base_url: str) -> None:
        limits = httpx.Limits(max_connections=32)
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits)
        self.admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        self.redeemer = {"Authorization": f"Bearer {REDEEM_KEY}"}

    async def close(self) -> None:
        await self.http.aclose()

    async def call(
        self, method: str, path: str, *, retry_s: float = 60.0, **kwargs: Any
    ) -> httpx.Response:
        kwargs.setdefault("headers", self.admin)
        deadline = time.monotonic() + retry_s
        while True:
            try:
                answer = await self.http.request(method, path, **kwargs)
                if answer.status_code < 500:
                    return answer
                failure = f"{answer.status_code} {answer.text[:200]}"
            except httpx.TransportError as error:
                failure = repr(error)
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path}: no answer within {retry_s} s: {failure}")
            await asyncio.sleep(0.2)

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = await self.call(method, path, **kwargs)
        assert answer.status_code < 300, f"{method} {path}: {answer.status_code} {answer.text}"
        return answer.json()


@dataclass
class Cluster:
    """The services of one system, by slot; a slot's process is replaced on restart."""

    system: System
    store: str
    amqp_url: str
    data_dir: Path | None
    workers: int
    slots: dict[str, Service] = field(default_factory=dict)
    armed: dict[str, str] = field(default_factory=dict)  # role -> REDEEM_FAILPOINTS
    unexpected: list[str] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        *,
        store: str,
        amqp_url: str,
        mongodb_url: str | None,
        home: Path,
        workers: int,
        env: Mapping[str, str] | None = None,
    ) -> Cluster:
        data_dir = None
        if store == "embedded":
            data_dir = home / "data"
            data_dir.mkdir(parents=True, exist_ok=True)
        base = system_env(
            rabbitmq_url=amqp_url,
            mongodb_url="" if store == "embedded" else mongodb_url or "",
            db=f"f_{uuid.uuid4().hex[:12]}",
            api_keys=API_KEYS,
            data_dir=data_dir,
        )
        base.update(SYSTEM_ENV)
        base.update(env or {})
        logs = home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        return cls(System(base, logs), store, amqp_url, data_dir, workers)

    @property
    def sqlite_path(self) -> Path:
        assert self.data_dir is not None, "the embedded store only"
        return self.data_dir / "redeem.sqlite3"

    @property
    def intake(self) -> Service:
        return self.slots["intake"]

    @property
    def partner(self) -> Service:
        return self.slots["partner"]

    def up(self) -> None:
        """The intake first (it declares the topology), then the others side by side."""
        self.slots["intake"] = self.system.start("intake")
        partner = self.system.start("partner", port=None, ready=False, **PARTNER_ENV)
        self.slots["partner"] = partner
        for n in range(self.workers):
            self.slots[f"worker-{n}"] = self.system.start("worker", ready=False)
        self.slots["results"] = self.system.start("results", ready=False)
        for slot, service in self.slots.items():
            if not wait_ready(service):
                raise RuntimeError(f"{slot} did not start: {tail(service, 20)}")

    def stop(self) -> None:
        self.system.stop()

    def of(self, role: str) -> list[str]:
        return [slot for slot, service in self.slots.items() if service.name == role]

    def wanted(self, slot: str) -> dict[str, str]:
        """What a process in `slot` adds to the system's environment: the partner's
        settings, or its role's failpoints when armed."""
        if slot == "partner":
            return dict(PARTNER_ENV)
        spec = self.armed.get(self.slots[slot].name)
        return {"REDEEM_FAILPOINTS": spec} if spec else {}

    def revive(self, slot: str, *, wait: bool = True, env: dict[str, str] | None = None) -> Service:
        """A new process in `slot` (the old one stopped if alive), armed as its role is
        unless `env` says otherwise."""
        extra = self.wanted(slot) if env is None or slot == "partner" else env
        new = self.system.restart(self.slots[slot], extra, ready=False)
        self.slots[slot] = new
        if wait:
            wait_ready(new)
        return new

    def heal(self) -> None:
        """Every slot alive and ready; a process that died or hangs unbidden is a finding."""
        for slot, service in list(self.slots.items()):
            if service.alive and wait_ready(service):
                continue
            if not service.alive and "REDEEM_FAILPOINTS" in service.extra:
                self.revive(slot)  # its failpoint may kill it at any time: that is no finding
                continue
            what = "died" if not service.alive else "never became ready"
            self.unexpected.append(f"{slot} {what}: {tail(service)}")
            self.revive(slot)

    def failpoints_fired(self, name: str = "") -> int:
        """Failpoints fired so far (by their log lines), all or those named `name`."""
        return sum(
            1
            for service in self.system.services
            for line in service.log().splitlines()
            if "failpoint fired" in line and name in line
        )


def wait_ready(service: Service, timeout_s: float = 30.0) -> bool:
    """Whether `service` answers `/readyz` within the deadline (False once it died)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and service.alive:
        try:
            with urllib.request.urlopen(service.url + "/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.1)
    return False


def tail(service: Service, lines: int = 5) -> str:
    return " | ".join(service.log().strip().splitlines()[-lines:])[-1500:]


RECONNECT_S = 60.0  # how long the observer waits for the broker to take it back


class Observer:
    """What observers see: a durable queue on `redemption.events` (`code.#`), declared
    before any load, so events published across a broker restart wait for us; and the
    dead-letter queue, read at the end.

    The client library does not always bring a consumer back after the broker
    restarted (its channel's restore can fail as the broker starts), so a watchdog
    checks that the queue has its consumer and, when not, consumes again on a new
    channel: what an observer that must not miss events does."""

    def __init__(self, connection: AbstractRobustConnection, queue: str) -> None:
        self._connection = connection
        self._queue = queue
        self._channel: aio_pika.abc.AbstractChannel | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.events: list[dict[str, Any]] = []
        self.arrived = asyncio.Event()
        self.resubscribed = 0

    @classmethod
    async def open(cls, amqp_url: str) -> Observer:
        connection = await aio_pika.connect_robust(amqp_url, reconnect_interval=1)
        observer = cls(connection, f"faults.events.{uuid.uuid4().hex[:8]}")
        await observer._subscribe()
        observer._watchdog = asyncio.create_task(observer._watch())
        return observer

    async def _subscribe(self) -> None:
        channel = await self._connection.channel()
        await channel.declare_exchange(
            topology.EVENTS_EXCHANGE, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await channel.declare_queue(self._queue, durable=True)
        await queue.bind(topology.EVENTS_EXCHANGE, routing_key="code.#")
        await queue.consume(self._keep)
        old, self._channel = self._channel, channel
        if old is not None:
            with contextlib.suppress(Exception):
                await old.close()

    async def _watch(self, every_s: float = 2.0) -> None:
        while True:
            await asyncio.sleep(every_s)
            with contextlib.suppress(Exception):  # the broker away: look again later
                if await self._consumers() == 0:
                    await self._subscribe()
                    self.resubscribed += 1

    async def _consumers(self) -> int:
        """The queue's consumers as the broker counts them (ours is the only one)."""
        channel = await self._connection.channel()
        try:
            declared = await channel.declare_queue(self._queue, passive=True)
            return int(declared.declaration_result.consumer_count or 0)
        finally:
            await channel.close()

    async def _keep(self, message: AbstractIncomingMessage) -> None:
        body = json.loads(message.body)
        body["_routingKey"] = message.routing_key
        self.events.append(body)
        self.arrived.set()
        await message.ack()

    async def dead_letters(self) -> list[dict[str, Any]]:
        """Every dead-lettered message's headers (taken off the queue), once our
        connection is back from whatever outage the run caused."""
        await asyncio.wait_for(self._connection.connected.wait(), RECONNECT_S)
        channel = await self._connection.channel()
        queue = await channel.get_queue(topology.DEAD_LETTER_QUEUE, ensure=False)
        found: list[dict[str, Any]] = []
        while (message := await queue.get(fail=False, timeout=10)) is not None:
            found.append(dict(message.headers or {}))
            await message.ack()
        await channel.close()
        return found

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        await self._connection.close()


@dataclass
class Run:
    """One fault kind against one system, cycle after cycle, then checked."""

    cluster: Cluster
    client: Client
    observer: Observer
    size: Size
    fault: Fault
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])
    requests: list[Request] = field(default_factory=list)
    plan: Plan = field(default_factory=Plan)
    faults: int = 0
    cycle: int = 0
    figures: dict[str, int | str] = field(default_factory=dict)  # the fault's own

    async def cycles(self) -> Report:
        for n in range(self.size.cycles):
            self.cycle = n
            requests = await self.prepare(n)
            await self.fault.arm(self)
            progress = Progress(len(requests))
            _, injected = await asyncio.gather(
                self.send(requests, progress), self.fault.during(self, progress)
            )
            self.faults += injected
            await asyncio.to_thread(self.cluster.heal)
            print(
                f"{self.fault.name} on {self.cluster.store}: cycle {n + 1}/{self.size.cycles},"
                f" {len(requests)} requests, {injected} faults",
                file=sys.stderr,
                flush=True,
            )
        return await self.check()

    async def check(self) -> Report:
        partner = Client(self.cluster.partner.url)
        try:
            end: EndState = await collect(
                self.client,
                partner,
                self.observer,
                self.plan,
                self.requests,
                settle_s=self.size.settle_s,
            )
        finally:
            await partner.close()
        end.unrecovered = list(self.cluster.unexpected)
        report = judge(
            end,
            title=f"{self.fault.name} on {self.cluster.store}",
            cycles=self.size.cycles,
            faults=self.faults,
            fired=self.cluster.failpoints_fired(),
        )
        report.figures.update(self.figures)
        report.figures["observer consumed again"] = self.observer.resubscribed
        report.figures["logs"] = str(self.cluster.system.logs)
        return report

    async def prepare(self, n: int) -> list[Request]:
        """This cycle's campaigns and codes, and the redemptions it will send."""
        s, prefix = self.size, f"f{self.run_id}c{n}"
        requests: list[Request] = []
        for kind, codes, racers in (
            ("plain", s.personal_codes, s.racers),
            ("local", s.local_codes, s.local_racers),
            ("partner", s.partner_codes, 1),
        ):
            code_type = f"{prefix}-{kind}"
            campaign = {"codeType": code_type, **CAMPAIGNS[kind]}
            await self.client.json("POST", "/v1/campaigns", json=campaign)
            self.plan.personal[code_type] = kind
            for c in range(codes):
                scan = f"{prefix.upper()}{kind[0].upper()}{c:03d}"
                body = {"scanCode": scan, "codeState": "Available", "customCodeInfo": REWARD}
                await self.client.json("POST", f"/v1/campaigns/{code_type}/codes", json=body)
                self.plan.codes.append((code_type, scan))
                requests += [
                    Request(kind, f"u{r}-{scan.lower()}", scan, code_type, uuid.uuid4().hex)
                    for r in range(racers)
                ]
        shared_type, shared_scan = f"{prefix}-shared", f"S{prefix.upper()}"[:20]
        await self.client.json(
            "POST",
            "/v1/campaigns",
            json={
                "codeType": shared_type,
                "codeUseType": "MULTI",
                "scanCode": shared_scan,
                "maxRedemptions": s.shared_max,
            },
        )
        self.plan.shared[shared_type] = s.shared_max
        requests += [
            Request("shared", f"fan{u}-{prefix}", shared_scan, shared_type, uuid.uuid4().hex)
            for u in range(s.shared_users)
        ]
        for i, request in enumerate(requests):
            request.wait = i % s.waiting_every == 0
        requests += [
            Request(r.kind, r.user, r.scan, r.code_type, r.request_id)
            for r in random.sample(requests, min(s.duplicates, len(requests)))
        ]
        random.shuffle(requests)
        return requests

    async def send(self, requests: list[Request], progress: Progress) -> None:
        gate = asyncio.Semaphore(8)

        async def one(request: Request) -> None:
            async with gate:
                await self.redeem(request)
                progress.advance()

        try:
            await asyncio.gather(*(one(r) for r in requests))
        finally:
            progress.finish()
        self.requests += requests

    async def redeem(self, request: Request) -> None:
        body = {
            "userId": request.user,
            "scanCode": request.scan,
            "codeType": request.code_type,
            "requestId": request.request_id,
        }
        params = {"wait": 3} if request.wait else {}
        answer = await self.client.call(
            "POST", "/v1/redemptions", headers=self.client.redeemer, params=params, json=body
        )
        request.status = answer.status_code
        if answer.status_code in (200, 202):
            request.redemption_id = answer.json().get("redemptionId")
        else:
            request.redemption_id = answer.headers.get("x-redemption-id")

    async def cycle_settled(self) -> bool:
        """Whether every redemption this run accepted so far is terminal."""
        for request in self.requests:
            if request.redemption_id is None:
                continue
            answer = await self.client.call(
                "GET", f"/v1/redemptions/{request.redemption_id}", headers=self.client.redeemer
            )
            if answer.status_code != 200 or answer.json().get("status") not in TERMINAL:
                return False
        return True


async def run_fault(cluster: Cluster, size: Size, fault: Fault) -> Report:
    """Start `cluster`, run `size.cycles` cycles of load with `fault`, check, stop."""
    async with running(cluster, size, fault) as run:
        return await run.cycles()


@contextlib.asynccontextmanager
async def running(cluster: Cluster, size: Size, fault: Fault) -> AsyncIterator[Run]:
    observer = await Observer.open(cluster.amqp_url)
    await asyncio.to_thread(cluster.up)
    client = Client(cluster.intake.url)
    try:
        yield Run(cluster, client, observer, size, fault)
    finally:
        await client.close()
        await observer.close()
        await asyncio.to_thread(cluster.stop)
