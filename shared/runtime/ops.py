"""Health, readiness and metrics over HTTP, for every service."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import prometheus_client
import structlog
import uvicorn
from fastapi import APIRouter, FastAPI, Response

Check = Callable[[], Awaitable[None]]
log = structlog.get_logger()
_METRICS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition format",
        "content": {prometheus_client.CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
    }
}


def ops_router(checks: Sequence[tuple[str, Check]], timeout_s: float = 2.0) -> APIRouter:
    """`/healthz` (the process answers), `/readyz` (its store and broker do), `/metrics`."""
    router = APIRouter()

    @router.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", tags=["ops"], responses={503: {"description": "a check failed"}})
    async def readyz(response: Response) -> dict[str, str]:
        results: dict[str, str] = {}
        for name, check in checks:
            try:
                await asyncio.wait_for(check(), timeout=timeout_s)
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"unavailable: {type(exc).__name__}"
                response.status_code = 503
        return results

    @router.get("/metrics", tags=["ops"], response_class=Response, responses=_METRICS)
    async def metrics() -> Response:
        return Response(
            prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST
        )

    return router


class OpsServer:
    """A small uvicorn server for a service whose main job is not HTTP."""

    def __init__(
        self, app: FastAPI, host: str, port: int, *, graceful_s: int | None = None
    ) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_config=None,
            lifespan="off",
            timeout_graceful_shutdown=graceful_s,
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None
        self._port = port

    async def start(self) -> None:
        if self._port:
            self._task = asyncio.create_task(self._server.serve())

    async def stop(self) -> None:
        if self._task:
            self._server.should_exit = True
            await self._task


def ops_app(checks: Sequence[tuple[str, Check]]) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(ops_router(checks))
    return app
