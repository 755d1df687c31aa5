"""`python -m services.worker`: consume redemption jobs and act on due timers until SIGTERM."""

import asyncio
import contextlib

import structlog

from services.worker.bootstrap import bootstrap
from services.worker.egress import connection_pool
from services.worker.transports import AmqpTransport, LocalTransport, Transports, WebhookTransport
from shared.handlers.registry import load_handlers
from shared.runtime import logs, tracing
from shared.runtime.ops import OpsServer, Readiness, ops_app
from shared.runtime.process import adapters, until_stopped
from shared.runtime.startup import settings_for

DEFAULT_PORT = 8081


async def main() -> None:
    settings = settings_for("worker", code_secret=True)
    logs.configure(settings.log_level, settings.log_format)
    tracing.configure("worker")
    log = structlog.get_logger().bind(service="worker")
    async with adapters(settings, "worker") as a, contextlib.AsyncExitStack() as stack:
        handlers = load_handlers()
        amqp = AmqpTransport(a.broker)
        await amqp.start()
        keys = settings.webhook_keyring()
        pool = await stack.enter_async_context(connection_pool(settings.webhook_address_policy()))
        webhook = WebhookTransport(
            pool,
            keys,
            try_timeout_s=settings.webhook_timeout_s,
            max_response_bytes=settings.webhook_max_response_bytes,
        )
        worker = bootstrap(
            a.store,
            Transports(LocalTransport(handlers), amqp, webhook),
            campaign_cache_ttl_s=settings.campaign_cache_ttl_s,
            lease_s=settings.fulfillment_lease_s,
            timer_scan_s=settings.timer_scan_s,
            timer_concurrency=settings.timer_concurrency,
            broker=a.broker,
            max_deliveries=settings.max_deliveries,
            failure_limits=settings.failure_limits_parsed(),
            uniform_refusals=settings.uniform_refusals,
            code_secret=settings.code_secret,
        )
        consumers = worker.consumers
        assert consumers is not None  # bootstrapped with a broker
        readiness = Readiness(
            [
                ("store", a.store.ping),
                ("broker", a.broker.ping),
                ("consumers", consumers.check),
                ("timers", worker.timers.check),
            ]
        )
        ops = OpsServer(ops_app(readiness), settings.http_host, settings.port_for(DEFAULT_PORT))
        await ops.start()
        await consumers.start()
        await worker.timers.start()
        log.info("worker started", handlers=sorted(handlers), webhook_keys=sorted(keys.by_handler))
        await until_stopped()
        log.info("worker stopping")
        readiness.stop()
        await worker.timers.stop()
        await consumers.stop()
        await ops.stop()
    log.info("worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
