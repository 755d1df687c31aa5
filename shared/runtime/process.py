"""What every service process does around its main job: adapters, signals, shutdown."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog

from shared.adapters.mongodb import MongoStore
from shared.adapters.rabbitmq import Broker
from shared.adapters.sqlite import SqliteStore
from shared.ports import Store
from shared.runtime.diagnostics import CommandCounter
from shared.runtime.settings import Settings

log = structlog.get_logger()


@dataclass
class Adapters:
    store: Store
    broker: Broker


def open_store(
    settings: Settings, name: str, listeners: list[CommandCounter] | None = None
) -> Store:
    """MongoDB when `REDEEM_MONGODB_URL` is set, else the embedded SQLite store."""
    if settings.mongodb_url:
        return MongoStore.connect(
            settings.mongodb_url, settings.mongodb_db, appname=name, event_listeners=listeners or []
        )
    return SqliteStore(settings.sqlite_path)


@asynccontextmanager
async def adapters(settings: Settings, name: str) -> AsyncIterator[Adapters]:
    """Connect the store and the broker, declare what they need, close them after."""
    counters = [CommandCounter(p) for p in [settings.mongodb_command_log] if p]
    store = open_store(settings, name, counters)
    log.info(
        "store",
        kind=type(store).__name__,
        where=settings.mongodb_db if settings.mongodb_url else str(settings.sqlite_path),
    )
    try:
        await store.prepare()
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
        await store.close()
        for counter in counters:
            counter.save()


async def until_stopped() -> None:
    """Return on SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
