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

import aio_pika
import httpx
from rich.console import Console

from services.cli.demo import report
from services.cli.demo.checks import check_invariants
from services.cli.demo.driver import CONCURRENCY, Driver
from services.cli.demo.scenario import Plan, Scenario
from services.cli.errors import CliError

__all__ = ["Plan", "run_demo"]

DEFAULT_PLAN = Plan()


async def run_demo(
    url: str, admin_key: str, rabbitmq_url: str, console: Console, plan: Plan = DEFAULT_PLAN
) -> bool:
    try:
        connection = await aio_pika.connect_robust(rabbitmq_url)
    except OSError as exc:
        raise CliError(f"cannot reach RabbitMQ at {rabbitmq_url}: {exc}") from None
    headers = {"Authorization": f"Bearer {admin_key}"}
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=90, limits=limits) as http:
        scenario = Scenario(plan)
        driver = Driver(http, connection, console, scenario.code_types)
        try:
            return await _run(driver, scenario)
        except httpx.HTTPError as exc:
            raise CliError(f"the system at {url} did not answer: {exc!r}") from None
        finally:
            await connection.close()


async def _run(driver: Driver, scenario: Scenario) -> bool:
    console = driver.console
    reply_queue = await driver.listen()
    console.print(f"Campaign [bold]{scenario.campaign}[/]: loading {scenario.plan.codes:,} codes")
    await scenario.setup(driver)
    attempts = scenario.attempts()
    console.print(f"Sending {len(attempts):,} redemptions over HTTP and AMQP")
    elapsed = await driver.load(attempts, reply_queue)
    report.summary(attempts, elapsed, console)
    checks = await check_invariants(driver, scenario, attempts)
    report.verdicts(checks, console)
    return all(ok for _, ok, _ in checks)
