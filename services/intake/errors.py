"""HTTP refusals: domain errors, invalid requests and oversized bodies as error responses."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.intake.refusals import refusal
from shared.domain.reasons import DomainError, ReasonCode
from shared.messages import MAX_BODY_BYTES

R = ReasonCode


def error_response(reason: ReasonCode, message: str, status: int | None = None) -> JSONResponse:
    body = refusal(reason, message, status)
    return JSONResponse(body.model_dump(), status_code=body.status)


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return error_response(exc.reason, exc.message)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for item in exc.errors()[:5]:
            where = ".".join(str(p) for p in item.get("loc", ())) or "body"
            parts.append(f"{where}: {item.get('msg')}")
        return error_response(R.INVALID_PARAMETER_VALUE, "; ".join(parts))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        reason = R.REDEMPTION_NOT_FOUND if exc.status_code == 404 else R.INVALID_PARAMETER_VALUE
        return error_response(reason, str(exc.detail), exc.status_code)


class BodyLimit:
    """Refuse bodies over MAX_BODY_BYTES before they are read into memory.

    Streamed uploads (paths ending in one of `streamed`) are read a line at
    a time by their handler, which limits each line instead.
    """

    def __init__(
        self, app: ASGIApp, limit: int = MAX_BODY_BYTES, streamed: tuple[str, ...] = ()
    ) -> None:
        self.app = app
        self.limit = limit
        self.streamed = streamed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(scope["path"].endswith(s) for s in self.streamed):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            R.INVALID_PARAMETER_VALUE, f"body is larger than {self.limit} bytes", 422
        )
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass
