"""`python -m services.worker`: consume redemption jobs until SIGTERM."""

import asyncio

import structlog

from services.worker.bootstrap import bootstrap
from services.worker.consumer import WorkConsumer
from services.worker.jobs import JobConsumer
from shared import logs
from shared.clock import new_id, utcnow
from shared.config import Settings
from shared.fulfillment.registry import load_handlers
from shared.ops import OpsServer, ops_app
from shared.runtime import adapters, until_stopped

DEFAULT_PORT = 8081


async def main() -> None:
    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    log = structlog.get_logger().bind(service="worker")
    async with adapters(settings, "worker") as a:
        handlers = load_handlers()
        service = bootstrap(a.store, handlers, campaign_cache_ttl_s=settings.campaign_cache_ttl_s)
        consumer = WorkConsumer(service, a.broker, utcnow, max_deliveries=settings.max_deliveries)
        jobs = JobConsumer(
            a.store, a.broker, utcnow, new_id, max_deliveries=settings.max_deliveries
        )
        ops = OpsServer(
            ops_app([("store", a.store.ping), ("broker", a.broker.ping)]),
            settings.http_host,
            settings.port_for(DEFAULT_PORT),
        )
        await ops.start()
        await consumer.start()
        await jobs.start()
        log.info("worker started", handlers=sorted(handlers))
        await until_stopped()
        log.info("worker stopping")
        await jobs.stop()
        await consumer.stop()
        await ops.stop()
    log.info("worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
