"""`python -m services.partner`: the fulfillment partner simulator, until SIGTERM."""

from __future__ import annotations

import asyncio

import structlog
from fastapi import FastAPI

from services.partner.app import Partner, PartnerSettings, routes
from shared.adapters.rabbitmq import Broker
from shared.runtime import logs
from shared.runtime.ops import OpsServer, ops_router
from shared.runtime.process import until_stopped
from shared.runtime.settings import Settings

DEFAULT_PORT = 8090


async def main() -> None:
    settings, own = Settings(), PartnerSettings()
    logs.configure(settings.log_level, settings.log_format)
    log = structlog.get_logger().bind(service="partner")
    broker = await Broker.connect(settings.rabbitmq_url, name="partner")
    try:
        await broker.declare_topology(max_deliveries=settings.max_deliveries)
        partner = Partner(own, broker, settings.webhook_keyring().secrets(own.handler))
        app = FastAPI(title="Fulfillment partner simulator")
        app.include_router(ops_router([("broker", broker.ping)]))
        routes(app, partner)
        # Requests it chose not to answer would hold a graceful shutdown forever.
        server = OpsServer(app, settings.http_host, settings.port_for(DEFAULT_PORT), graceful_s=1)
        await server.start()
        await partner.start()
        log.info("partner started", handler=own.handler, mode=own.mode, delay_s=own.delay_s)
        await until_stopped()
        await partner.stop()
        await server.stop()
    finally:
        await broker.close()


if __name__ == "__main__":
    asyncio.run(main())
