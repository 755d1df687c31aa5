"""Health, readiness and metrics over HTTP, for every service; HTTP requests measured."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import prometheus_client
import structlog
import uvicorn
from fastapi import APIRouter, FastAPI, Response
from prometheus_client import Counter, Histogram

Check = Callable[[], Awaitable[None]]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
log = structlog.get_logger()
# The methods counted by name; any other a client sends is `other`, so that no client
# makes new series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by method, route and status",
    ["method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route",
    ["method", "route"],
)
_METRICS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition format",
        "content": {prometheus_client.CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
    }
}


class Readiness:
    """What `/readyz` answers: ready while every check passes, and unready for good from
    `stop()` on, which a service calls on SIGTERM before it drains, so that a load
    balancer or Kubernetes sends it nothing new while it finishes what it holds."""

    def __init__(self, checks: Sequence[tuple[str, Check]]) -> None:
        self._checks = list(checks)
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    async def results(self, timeout_s: float) -> tuple[bool, dict[str, str]]:
        """Whether ready, and each check's result."""
        results: dict[str, str] = {}
        ready = not self._stopping
        if self._stopping:
            results["service"] = "stopping"
        for name, check in self._checks:
            try:
                await asyncio.wait_for(check(), timeout=timeout_s)
                results[name] = "ok"
            except Exception as exc:
                results[name] = f"unavailable: {type(exc).__name__}"
                ready = False
        return ready, results


def ops_router(
    checks: Sequence[tuple[str, Check]] | Readiness, timeout_s: float = 2.0
) -> APIRouter:
    """`/healthz` (the process answers), `/readyz` (its checks pass and it is not stopping),
    `/metrics`."""
    readiness = checks if isinstance(checks, Readiness) else Readiness(checks)
    router = APIRouter()

    @router.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", tags=["ops"], responses={503: {"description": "a check failed"}})
    async def readyz(response: Response) -> dict[str, str]:
        ready, results = await readiness.results(timeout_s)
        if not ready:
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


def ops_app(checks: Sequence[tuple[str, Check]] | Readiness) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(ops_router(checks))
    return app


class HttpMetrics:
    """ASGI middleware counting every HTTP request by method (`other` for one not in
    `METHODS`), route (the path template, so that ids make no new series; `unmatched`
    for a path no route has) and status, and timing it. Outermost, so that it sees the
    answers of every other layer."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        status = 500  # unless an answer starts
        started = time.perf_counter()

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "other"
            HTTP_REQUESTS.labels(method, route, str(status)).inc()
            HTTP_SECONDS.labels(method, route).observe(time.perf_counter() - started)
