"""What every service process does around its main job: adapters, signals, shutdown."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from pymongo import AsyncMongoClient

from shared.adapters.documents import Doc
from shared.adapters.mongo_store import MongoStore
from shared.adapters.rabbitmq import Broker
from shared.config import Settings


@dataclass
class Adapters:
    store: MongoStore
    broker: Broker


@asynccontextmanager
async def adapters(settings: Settings, name: str) -> AsyncIterator[Adapters]:
    """Connect the store and the broker, declare what they need, close them after."""
    client: AsyncMongoClient[Doc]
    store, client = MongoStore.connect(settings.mongodb_url, settings.mongodb_db, appname=name)
    try:
        await store.create_indexes()
        broker = await Broker.connect(
            settings.rabbitmq_url,
            prefetch=settings.prefetch,
            publish_timeout_s=settings.publish_timeout_s,
            name=name,
        )
        try:
            await broker.declare_topology(max_deliveries=settings.max_deliveries)
            yield Adapters(store, broker)
        finally:
            await broker.close()
    finally:
        await client.close()


async def until_stopped() -> None:
    """Return on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
