"""The intake's HTTP API: its routers assembled, and a lifespan that wires them to adapters."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

from services.intake import console, errors
from services.intake.auth import CredentialsFirst
from services.intake.bootstrap import bootstrap
from services.intake.routes import (
    async_responses,
    braincloud,
    bulk,
    campaigns,
    codes,
    lockouts,
    redemptions,
    users,
)
from shared import tracing
from shared.clock import Clock, utcnow
from shared.messages import ErrorBody
from shared.runtime.ops import HttpMetrics, ops_router
from shared.runtime.process import Adapters
from shared.runtime.settings import Settings

Connect = Callable[[Settings, str], AbstractAsyncContextManager[Adapters]]
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (401, 403, 404, 409, 422, 429)
}
# bulk before codes: /codes/{scanCode} would take /codes/export.
ROUTERS = (campaigns, bulk, codes, redemptions, async_responses, users, lockouts, braincloud)


def create_app(settings: Settings, connect: Connect, clock: Clock = utcnow) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with connect(settings, "intake") as adapters:
            intake = bootstrap(adapters.store, adapters.broker, settings, clock=clock)
            await intake.replies.start()
            await intake.commands.start()
            app.state.intake = intake
            app.state.dead_letters = adapters.broker
            checks = [("store", adapters.store.ping), ("broker", adapters.broker.ping)]
            app.include_router(ops_router(checks))
            yield
            await intake.commands.stop()

    app = FastAPI(title="Redemption codes", version="1", lifespan=lifespan, responses=ERRORS)
    app.state.keys = settings.api_keys_parsed()
    errors.install(app)
    # Each checks a body when it is first read, the innermost first: the caller's key,
    # then the body's size.
    app.add_middleware(CredentialsFirst)
    if settings.braincloud_cors_origins:
        origins = [o.strip() for o in settings.braincloud_cors_origins.split(",") if o.strip()]
        app.add_middleware(braincloud.FrontDoorCors, origins=origins)
    app.add_middleware(
        errors.BodyLimit,
        streamed={
            ("POST", bulk.IMPORT_PATH): settings.max_import_bytes,
            ("POST", console.IMPORT_PATH): settings.max_import_bytes,
            ("POST", console.IMPORT_FORM_PATH): settings.max_import_bytes,
            **braincloud.STREAMED,
        },
    )
    app.add_middleware(HttpMetrics)
    if tracing.recording():  # a server span a request, continuing the context it came with
        app.add_middleware(OpenTelemetryMiddleware, exclude_spans=["receive", "send"])
    for area in ROUTERS:
        app.include_router(area.router)
    console.install(app, settings)
    return app
