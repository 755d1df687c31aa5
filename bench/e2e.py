"""End-to-end redemptions per second, beside the machine's raw RabbitMQ rates.

HTTP accepted -> `code.redeemed` received, with one and with two workers, on
MongoDB and on the embedded store; the raw publish-with-confirm and consume
rates of the same broker in the same run, and the end-to-end rates as ratios
of them; and the MongoDB commands each redemption costs (worker and relay),
counted with PyMongo's command monitoring inside the services.

Each system is measured twice: at its maximum rate (every connection sends its
next request once the last is answered), then at a fixed offered load below
saturation (`--load` of that maximum, for `--paced-s` seconds). For each, the
latency from the intake's answer (202) to the `code.redeemed` event reaching
this process (p50, p95, p99), and the CPU milliseconds per redemption of each
service process, of the broker's Erlang VM (when the broker is local), of a
local store server (SecantusDB or mongod), and of this process (the load
generator and the event observer), from /proc over the measured phase only.

    .venv/bin/python -m bench.e2e [--codes 2000] [--mongodb-codes N]
        [--store embedded mongodb] [--workers 1 2] [--connections 8]
        [--load 0.5] [--paced-s 10] [--failure-limits user=off]

MongoDB is the one the tests would use (REDEEM_TEST_MONGODB_URL, else a
local SecantusDB surrogate); RabbitMQ the local broker, a virtual host a run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import httpx

from bench.support import cpu, servers
from bench.support.load import Observer, Sender, percentiles, post
from bench.support.processes import System, system_env
from shared import topology

ADMIN, KEYS = "bench-admin", "bench-admin=admin"
BODY = b'{"schemaVersion":1,"redemptionId":"' + b"x" * 36 + b'","requestId":"r","userId":"u"}'
CAMPAIGN = "bench"
PHASE_TIMEOUT_S = 300
SETTLE_S = 1.0  # for the relay's and workers' start-up commands; the broker's rest rate
# Codes on the SecantusDB surrogate, whose queries slow as its collections grow (2,000
# codes there take more than five minutes a system).
SURROGATE_CODES = 300


async def raw_rates(url: str, count: int) -> tuple[float, float]:
    """Publish-with-confirm and consume (manual ack) rates on a quorum queue."""
    connection = await aio_pika.connect_robust(url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue("bench.raw", durable=True, arguments={"x-queue-type": "quorum"})
        gate = asyncio.Semaphore(64)

        async def publish() -> None:
            async with gate:
                message = aio_pika.Message(BODY, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                await channel.default_exchange.publish(message, "bench.raw", timeout=10)

        started = time.perf_counter()
        await asyncio.gather(*(publish() for _ in range(count)))
        published = count / (time.perf_counter() - started)
        consumer = await connection.channel()
        await consumer.set_qos(prefetch_count=32)
        done = asyncio.Event()
        seen = 0

        async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal seen
            await message.ack()
            seen += 1
            if seen == count:
                done.set()

        started = time.perf_counter()
        await (await consumer.get_queue("bench.raw")).consume(take)
        await done.wait()
        return published, count / (time.perf_counter() - started)


def mongo_commands(logs: Path) -> Counter[str]:
    total: Counter[str] = Counter()
    for path in logs.glob("commands-*.json"):
        with contextlib.suppress(ValueError, OSError):
            total.update(
                {
                    f"{path.stem.split('-')[1]}:{k}": v
                    for k, v in json.loads(path.read_text()).items()
                }
            )
    return total


def forget_commands(logs: Path) -> None:
    for path in logs.glob("commands-*.json"):
        path.unlink()


@dataclass(frozen=True)
class Phase:
    """One measured phase: its redemptions, from the first request to the last event."""

    codes: int
    elapsed_s: float
    latencies_s: list[float]  # each redemption's, accepted -> code.redeemed received
    relayed_s: list[float]  # each redemption's, stored by the worker -> its event received
    events_s: float  # from the phase's first event to its last
    cpu_ms: dict[str, float]  # each watched process's, over the phase
    offered: float | None = None  # requests per second sent, when the load was fixed

    @property
    def rate(self) -> float:
        """Redemptions a second, from the first request to the last event."""
        return self.codes / self.elapsed_s

    @property
    def events_rate(self) -> float:
        """Events a second, from the first to the last (latency's offset left out)."""
        return (self.codes - 1) / self.events_s if self.events_s > 0 else float("nan")


@dataclass(frozen=True)
class Run:
    """One system's figures: at its maximum rate, and at a fixed load below it."""

    peak: Phase
    paced: Phase
    commands: Counter[str]
    broker_rest_ms_s: float | None  # the broker's CPU while this system was idle


@dataclass(frozen=True)
class Setup:
    """What every system of a run shares."""

    rabbit: servers.Rabbit
    work: Path
    connections: int
    load: float
    paced_s: float
    shared: tuple[cpu.Watched, ...]  # the broker's and the store server's processes
    failure_limits: str | None  # the services' REDEEM_FAILURE_LIMITS, if not their default


async def end_to_end(setup: Setup, mongo_url: str | None, workers: int, codes: int) -> Run:
    amqp = setup.rabbit.new_vhost()
    work = setup.work
    env = system_env(
        rabbitmq_url=amqp,
        mongodb_url=mongo_url or "",
        db=f"b_{uuid.uuid4().hex[:8]}",
        api_keys=KEYS,
        data_dir=work / uuid.uuid4().hex,
    )
    env["REDEEM_LOG_LEVEL"] = "WARNING"
    if setup.failure_limits is not None:
        env["REDEEM_FAILURE_LIMITS"] = setup.failure_limits
    system = System(env, work)
    try:
        intake = system.start("intake")
        watched = [cpu.Watched("intake", intake.process.pid)]
        for n in range(workers):
            system.env["REDEEM_MONGODB_COMMAND_LOG"] = str(work / f"commands-worker{n}.json")
            watched.append(cpu.Watched(f"worker{n}", system.start("worker").process.pid))
        system.env["REDEEM_MONGODB_COMMAND_LOG"] = str(work / "commands-results.json")
        watched.append(cpu.Watched("results", system.start("results").process.pid))
        return await _measure(setup, intake.url, amqp, codes, [*watched, *setup.shared])
    finally:
        system.stop()
        forget_commands(work)
        setup.rabbit.drop_vhost(amqp)


async def _measure(
    setup: Setup, url: str, amqp: str, codes: int, watched: list[cpu.Watched]
) -> Run:
    connection = await aio_pika.connect_robust(amqp)
    async with connection:
        observer = Observer(connection, topology.EVENTS_EXCHANGE, "code.redeemed")
        await observer.listen()
        async with httpx.AsyncClient(base_url=url, headers=_auth(), timeout=120) as admin:
            answer = await admin.post("/v1/campaigns", json={"codeType": CAMPAIGN})
            answer.raise_for_status()
            peak_requests = await _prepare(admin, url, "M", codes)
            rest_before = cpu.snapshot(setup.shared)
            await asyncio.sleep(SETTLE_S)
            broker_rest = cpu.used(rest_before, cpu.snapshot(setup.shared)).get("broker")
            before = mongo_commands(setup.work)
            async with Sender(url, setup.connections) as sender:
                peak = await _phase(sender, observer, peak_requests, watched)
            commands = mongo_commands(setup.work)
            commands.subtract(before)
            offered = setup.load * peak.rate
            paced_codes = max(10, round(offered * setup.paced_s))
            paced_requests = await _prepare(admin, url, "P", paced_codes)
            await asyncio.sleep(SETTLE_S)
            async with Sender(url, setup.connections) as sender:
                paced = await _phase(sender, observer, paced_requests, watched, offered)
    rest = None if broker_rest is None else broker_rest / SETTLE_S
    return Run(peak, paced, commands, rest)


def _auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN}"}


async def _prepare(
    admin: httpx.AsyncClient, url: str, prefix: str, codes: int
) -> list[tuple[str, bytes]]:
    """Import `codes` codes, and encode a request redeeming each (keyed by its user)."""
    lines = "\n".join(
        f'{{"scanCode": "{prefix}-{n:06d}", "codeState": "Available"}}' for n in range(codes)
    )
    answer = await admin.post(
        f"/v1/campaigns/{CAMPAIGN}/codes/import?format=ndjson", content=lines.encode()
    )
    answer.raise_for_status()
    requests = []
    for n in range(codes):
        user = f"{prefix.lower()}{n}"
        body = {"userId": user, "scanCode": f"{prefix}-{n:06d}", "codeType": CAMPAIGN}
        body["requestId"] = uuid.uuid4().hex
        encoded = json.dumps(body, separators=(",", ":")).encode()
        requests.append((user, post(url, "/v1/redemptions", _auth(), encoded)))
    return requests


async def _phase(
    sender: Sender,
    observer: Observer,
    requests: list[tuple[str, bytes]],
    watched: list[cpu.Watched],
    rate: float | None = None,
) -> Phase:
    """Send `requests` (at `rate` a second, or as fast as they are answered) and wait for
    their events. This process's CPU is read innermost, so that reading the others' is
    not counted as the load generator's."""
    expected = len(observer.received_at) + len(requests)
    me = [cpu.Watched("load generator", os.getpid(), children=False)]  # not the services
    services_before = cpu.snapshot(watched)
    me_before = cpu.snapshot(me)
    started = time.perf_counter()
    await sender.run(requests, rate)
    if not await observer.until(expected, PHASE_TIMEOUT_S):
        got = len(observer.received_at) - expected + len(requests)
        raise TimeoutError(f"{got} of {len(requests)} redeemed within {PHASE_TIMEOUT_S} s")
    elapsed = time.perf_counter() - started
    me_used = cpu.used(me_before, cpu.snapshot(me))
    used = {**cpu.used(services_before, cpu.snapshot(watched)), **me_used}
    keys = [key for key, _ in requests]
    received = [observer.received_at[k] for k in keys]
    latencies = [observer.received_at[k] - sender.accepted_at[k] for k in keys]
    relayed = [observer.received_at[k] - observer.redeemed_at[k] for k in keys]
    spread = max(received) - min(received)
    return Phase(len(requests), elapsed, latencies, relayed, spread, used, rate)


def report_commands(label: str, used: Counter[str], codes: int) -> None:
    if not used:
        print(f"  {label}: MongoDB commands not counted (embedded store)")
        return
    total = sum(used.values())
    by = ", ".join(f"{k} {v / codes:.2f}" for k, v in sorted(used.items()) if v)
    verdict = "meets" if total / codes <= 3 else "misses"
    print(
        f"  {label}: {total / codes:.2f} MongoDB commands per redemption ({verdict} the"
        f" target of 3): {by}"
    )


def report_phase(phase: Phase, rest_ms_s: float | None = None) -> None:
    p50, p95, p99 = (1000 * s for s in percentiles(phase.latencies_s, 50, 95, 99))
    r50, r95, r99 = (1000 * s for s in percentiles(phase.relayed_s, 50, 95, 99))
    print(
        f"    latency accepted -> code.redeemed: p50 {p50:,.0f} ms, p95 {p95:,.0f} ms,"
        f" p99 {p99:,.0f} ms; of which stored -> received (the relay): p50 {r50:,.0f} ms,"
        f" p95 {r95:,.0f} ms, p99 {r99:,.0f} ms"
    )
    shares = [f"{name} {ms / phase.codes:.2f}" for name, ms in phase.cpu_ms.items()]
    total = sum(phase.cpu_ms.values()) / phase.codes
    rest = "" if rest_ms_s is None else f" (broker at rest: {rest_ms_s:.0f} ms/s)"
    print(f"    CPU ms per redemption: {', '.join(shares)}; total {total:.2f}{rest}")


def report(store: str, workers: int, run: Run, published: float, consumed: float) -> None:
    peak, paced = run.peak, run.paced
    print(
        f"{store:8} {workers} worker(s): {peak.rate:,.0f} redemptions/s end to end"
        f" = {peak.rate / published:.3f} of raw publish, {peak.rate / consumed:.3f} of"
        f" raw consume ({peak.codes} codes)"
    )
    report_phase(peak, run.broker_rest_ms_s)
    print(
        f"  at a fixed offered load of {paced.offered or 0:,.1f}/s"
        f" ({(paced.offered or 0) / peak.rate:.0%} of the maximum, {paced.codes} codes):"
        f" {paced.events_rate:,.1f} redemptions/s (first event to last), {paced.rate:,.1f}/s"
        f" first request to last event"
    )
    report_phase(paced)
    report_commands("commands", run.commands, peak.codes)


def shared_processes(rabbit: servers.Rabbit, mongo_url: str | None) -> list[cpu.Watched]:
    """The broker's and the store server's processes, when they run on this machine."""
    found = []
    broker = cpu.rabbitmq_pid() if rabbit.local else None
    if broker is not None:
        found.append(cpu.Watched("broker", broker))
    if mongo_url:
        parts = urllib.parse.urlsplit(mongo_url)
        if parts.hostname in ("127.0.0.1", "localhost"):
            server = cpu.server_pid(parts.port or 27017)
            if server is not None:
                found.append(cpu.Watched("store server", server))
    return found


async def main(arguments: argparse.Namespace) -> None:
    with (
        servers.rabbitmq() as rabbit,
        servers.mongodb() as mongo,
        tempfile.TemporaryDirectory() as tmp,
    ):
        surrogate = "SecantusDB" in mongo.kind
        mongodb_codes = arguments.mongodb_codes or (
            SURROGATE_CODES if surrogate else arguments.codes
        )
        print(f"RabbitMQ: {rabbit.kind}\nMongoDB: {mongo.kind}")
        raw = rabbit.new_vhost()
        published, consumed = await raw_rates(raw, 5 * arguments.codes)
        rabbit.drop_vhost(raw)
        print(
            f"raw RabbitMQ: publish with confirm {published:,.0f}/s,"
            f" consume with ack {consumed:,.0f}/s"
        )
        for store in arguments.store:
            url = mongo.url if store == "mongodb" else None
            codes = mongodb_codes if store == "mongodb" else arguments.codes
            setup = Setup(
                rabbit,
                Path(tmp),
                arguments.connections,
                arguments.load,
                arguments.paced_s,
                tuple(shared_processes(rabbit, url)),
                arguments.failure_limits,
            )
            for workers in arguments.workers:
                run = await end_to_end(setup, url, workers, codes)
                report(store, workers, run, published, consumed)


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--codes", type=int, default=2_000, help="redemptions at the maximum rate")
    parser.add_argument(
        "--mongodb-codes",
        type=int,
        help=f"on MongoDB (default: --codes; {SURROGATE_CODES} on the SecantusDB surrogate)",
    )
    parser.add_argument(
        "--store", nargs="+", choices=("mongodb", "embedded"), default=["mongodb", "embedded"]
    )
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--connections", type=int, default=8, help="keep-alive HTTP connections")
    parser.add_argument(
        "--load", type=float, default=0.5, help="the fixed offered load, of the maximum rate"
    )
    parser.add_argument("--paced-s", type=float, default=10.0, help="the fixed load's duration")
    parser.add_argument(
        "--failure-limits",
        help="the services' REDEEM_FAILURE_LIMITS (default: theirs, user=10/15m); 'user=off'"
        " measures redemptions without the failure budget's two commands",
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
