"""The intake in process: bootstrapped with fakes, its HTTP API driven over ASGI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, cast

import httpx

from services.intake.app import create_app
from services.intake.bootstrap import Intake, bootstrap
from shared.adapters.rabbitmq import Broker
from shared.clock import Clock, utcnow
from shared.ports import Store
from shared.runtime.settings import Settings

# The redemption id secret of an intake whose settings give none.
REDEMPTION_ID_SECRET = "test-redemption-id-secret"


@dataclass
class Published:
    exchange: str
    routing_key: str
    body: bytes
    options: dict[str, Any]


@dataclass
class RecordingBroker:
    """What the intake's services publish, kept instead of sent."""

    published: list[Published] = field(default_factory=list)

    async def publish(self, exchange: str, routing_key: str, body: bytes, **options: Any) -> None:
        self.published.append(Published(exchange, routing_key, body, options))

    async def consume_replies(self, _: object) -> Any:
        """A reply queue no reply reaches: a caller who waits gets the stored outcome."""
        return SimpleNamespace(queue_name="intake.replies.test")


@asynccontextmanager
async def intake_client(
    store: Store, broker: RecordingBroker, settings: Settings, clock: Clock = utcnow
) -> AsyncIterator[tuple[httpx.AsyncClient, Intake]]:
    """The HTTP API over `store` and `broker`; no lifespan: no command consumer, and a
    reply queue that stays empty."""

    def no_adapters(*_: object) -> Any:
        raise AssertionError("the adapters are given, not connected")

    if not settings.redemption_id_secret:
        settings = settings.model_copy(update={"redemption_id_secret": REDEMPTION_ID_SECRET})
    app = create_app(settings, no_adapters, clock)
    # Only `publish` is used by what these tests drive: redeem without waiting, generate.
    app.state.intake = bootstrap(store, cast(Broker, broker), settings, clock=clock)
    await app.state.intake.replies.start()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://intake") as client:
        yield client, app.state.intake
