"""`python -m services.worker`: consume redemption jobs and act on due timers until SIGTERM."""

import asyncio
import contextlib

import httpx
import structlog

from services.worker.bootstrap import bootstrap
from services.worker.consumer import WorkConsumer
from services.worker.jobs import JobConsumer
from services.worker.transports import AmqpTransport, LocalTransport, Transports, WebhookTransport
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
    async with adapters(settings, "worker") as a, contextlib.AsyncExitStack() as stack:
        handlers = load_handlers()
        amqp = AmqpTransport(a.broker)
        await amqp.start()
        webhook = None
        if settings.webhook_secret:
            client = await stack.enter_async_context(httpx.AsyncClient())
            webhook = WebhookTransport(
                client, settings.webhook_secret, try_timeout_s=settings.webhook_timeout_s
            )
        worker = bootstrap(
            a.store,
            Transports(LocalTransport(handlers), amqp, webhook),
            campaign_cache_ttl_s=settings.campaign_cache_ttl_s,
            lease_s=settings.fulfillment_lease_s,
            timer_scan_s=settings.timer_scan_s,
            timer_concurrency=settings.timer_concurrency,
        )
        consumer = WorkConsumer(
            worker.redeem, a.broker, utcnow, max_deliveries=settings.max_deliveries
        )
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
        await worker.timers.start()
        log.info("worker started", handlers=sorted(handlers), webhooks=webhook is not None)
        await until_stopped()
        log.info("worker stopping")
        await worker.timers.stop()
        await jobs.stop()
        await consumer.stop()
        await ops.stop()
    log.info("worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
