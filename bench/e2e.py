"""End-to-end redemptions per second, beside the machine's raw RabbitMQ rates.

HTTP accepted -> `code.redeemed` received, with one and with two workers, on
MongoDB and on the embedded store; the raw publish-with-confirm and consume
rates of the same broker in the same run, and the end-to-end rates as ratios
of them; and the MongoDB commands each redemption costs (worker and relay),
counted with PyMongo's command monitoring inside the services.

    .venv/bin/python -m bench.e2e [--codes 2000] [--concurrency 64]

MongoDB is the one the tests would use (REDEEM_TEST_MONGODB_URL, else a
local SecantusDB surrogate); RabbitMQ the local broker, a virtual host a run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import aio_pika
import httpx
from rich.console import Console

from bench.support import servers
from bench.support.processes import System, system_env
from services.cli.demo.driver import Attempt, Driver

ADMIN, KEYS = "bench-admin", "bench-admin=admin"
BODY = b'{"schemaVersion":1,"redemptionId":"' + b"x" * 36 + b'","requestId":"r","userId":"u"}'


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


async def end_to_end(
    rabbit: servers.Rabbit,
    mongo_url: str | None,
    workers: int,
    codes: int,
    concurrency: int,
    work: Path,
) -> tuple[float, Counter[str]]:
    amqp = rabbit.new_vhost()
    env = system_env(
        rabbitmq_url=amqp,
        mongodb_url=mongo_url or "",
        db=f"b_{uuid.uuid4().hex[:8]}",
        api_keys=KEYS,
        data_dir=work / uuid.uuid4().hex,
    )
    env["REDEEM_LOG_LEVEL"] = "WARNING"
    system = System(env, work)
    try:
        intake = system.start("intake")
        for n in range(workers):
            system.env["REDEEM_MONGODB_COMMAND_LOG"] = str(work / f"commands-worker{n}.json")
            system.start("worker")
        system.env["REDEEM_MONGODB_COMMAND_LOG"] = str(work / "commands-results.json")
        system.start("results")
        return await _load(intake.url, amqp, codes, concurrency, work)
    finally:
        system.stop()
        forget_commands(work)


async def _load(
    url: str, amqp: str, codes: int, concurrency: int, work: Path
) -> tuple[float, Counter[str]]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    connection = await aio_pika.connect_robust(amqp)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as http:
        quiet = Console(quiet=True)  # the driver's progress bars stay out of the figures
        driver = Driver(http, connection, quiet, ("bench",), concurrency=concurrency)
        await driver.listen(routing_key="code.redeemed")
        await driver.call("POST", "/v1/campaigns", json={"codeType": "bench"})
        lines = "\n".join(
            f'{{"scanCode": "B-{n:06d}", "codeState": "Available"}}' for n in range(codes)
        )
        await driver.call(
            "POST", "/v1/campaigns/bench/codes/import?format=ndjson", content=lines.encode()
        )
        attempts = [
            Attempt("http", f"u{n}", f"B-{n:06d}", "redeemed", "bench") for n in range(codes)
        ]
        await asyncio.sleep(1)  # let the relay's and workers' start-up commands settle
        before = mongo_commands(work)
        started = time.perf_counter()
        await driver.bounded("redeeming", [driver.submit(a) for a in attempts])
        refused = [a for a in attempts if a.status != "Pending"]
        if refused:
            raise RuntimeError(f"{len(refused)} not accepted, as {refused[0]}")
        if not await driver.until(lambda: len(driver.events) >= codes, timeout_s=300):
            raise TimeoutError(f"{len(driver.events)} of {codes} redeemed within 300 s")
        elapsed = time.perf_counter() - started
        used = mongo_commands(work)
        used.subtract(before)
    await connection.close()
    return codes / elapsed, used


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


async def main(codes: int, concurrency: int) -> None:
    with (
        servers.rabbitmq() as rabbit,
        servers.mongodb() as mongo,
        tempfile.TemporaryDirectory() as tmp,
    ):
        print(f"RabbitMQ: {rabbit.kind}\nMongoDB: {mongo.kind}")
        published, consumed = await raw_rates(rabbit.new_vhost(), 5 * codes)
        print(
            f"raw RabbitMQ: publish with confirm {published:,.0f}/s,"
            f" consume with ack {consumed:,.0f}/s"
        )
        for store, url in (("mongodb", mongo.url), ("embedded", None)):
            for workers in (1, 2):
                rate, used = await end_to_end(rabbit, url, workers, codes, concurrency, Path(tmp))
                print(
                    f"{store:8} {workers} worker(s): {rate:,.0f} redemptions/s end to end"
                    f" = {rate / published:.3f} of raw publish, {rate / consumed:.3f} of"
                    f" raw consume"
                )
                report_commands("commands", used, codes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--codes", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=64)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.codes, arguments.concurrency))
