"""`python -m services.results`: relay events and outcomes, and sample the backlogs,
until SIGTERM."""

import asyncio

import structlog

from services.results.gauges import Gauges
from services.results.relay import Relay
from shared.clock import utcnow
from shared.runtime import logs, tracing
from shared.runtime.ops import OpsServer, Readiness, ops_app
from shared.runtime.process import adapters, until_stopped
from shared.runtime.startup import settings_for

DEFAULT_PORT = 8082


async def main() -> None:
    settings = settings_for("results")
    logs.configure(settings.log_level, settings.log_format)
    tracing.configure("results")
    log = structlog.get_logger().bind(service="results")
    async with adapters(settings, "results") as a:
        relay = Relay(a.store, a.broker, batch=settings.relay_batch, idle_s=settings.relay_idle_s)
        readiness = Readiness(
            [("store", a.store.ping), ("broker", a.broker.ping), ("relay", relay.check)]
        )
        ops = OpsServer(ops_app(readiness), settings.http_host, settings.port_for(DEFAULT_PORT))
        gauges = Gauges(a.store, a.broker, utcnow, every_s=settings.gauges_every_s)
        await ops.start()
        running = asyncio.create_task(relay.run())
        sampling = asyncio.create_task(gauges.run())
        log.info("results started")
        await until_stopped()
        log.info("results stopping")
        readiness.stop()
        relay.stop()
        gauges.stop()
        await asyncio.gather(running, sampling)
        await ops.stop()
    log.info("results stopped")


if __name__ == "__main__":
    asyncio.run(main())
