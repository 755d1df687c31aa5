"""HTTP refusals: domain errors, invalid requests and oversized bodies as error responses."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.intake.refusals import http_status, refusal
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

    @app.exception_handler(Refusal)
    async def refused(_: Request, exc: Refusal) -> JSONResponse:
        return error_response(exc.error.reason, exc.error.message)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        reason = R.REDEMPTION_NOT_FOUND if exc.status_code == 404 else R.INVALID_PARAMETER_VALUE
        # FastAPI's 400 is a body it could not decode (not UTF-8, say): bad input, as any.
        status = 422 if exc.status_code == 400 else exc.status_code
        return error_response(reason, str(exc.detail), status)


class Refusal(HTTPException):
    """A DomainError raised while a body is read: of what reading the body of a route
    that parses it raises, FastAPI passes on an HTTPException only."""

    def __init__(self, error: DomainError) -> None:
        super().__init__(http_status(error.reason), error.message)
        self.error = error


class BodyLimit:
    """Refuse a body over its route's limit before it is read into memory.

    A body is at most `limit` bytes, except a streamed upload's: `streamed` maps the
    method and the pattern of each route that streams (the route that took the
    request, exactly) to its own limit. The limit is checked when the body is first
    read, against a declared Content-Length (nothing read yet), then as it is read.
    A parsed body's excess is a `Refusal`; a streamed one's is a DomainError in the
    middle of the stream, so that its handler can say how far it got.
    """

    def __init__(
        self,
        app: ASGIApp,
        limit: int = MAX_BODY_BYTES,
        streamed: Mapping[tuple[str, str], int] | None = None,
    ) -> None:
        self.app = app
        self.limit = limit
        self.streamed = dict(streamed or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.app(scope, self._limited(scope, receive), send)

    def _limited(self, scope: Scope, receive: Receive) -> Receive:
        seen: int | None = None

        async def limited() -> Message:
            nonlocal seen
            limit, streamed = self._limit_of(scope)
            if seen is None:  # the first read: what the caller says it sends
                _check(_declared(scope), limit, streamed)
                seen = 0
            message = await receive()
            seen += len(message.get("body", b""))
            _check(seen, limit, streamed)
            return message

        return limited

    def _limit_of(self, scope: Scope) -> tuple[int, bool]:
        """The limit of this request's body, and whether its handler streams it."""
        pattern = getattr(scope.get("route"), "path", None)
        size = self.streamed.get((scope["method"], pattern or ""))
        return (self.limit, False) if size is None else (size, True)


def _declared(scope: Scope) -> int:
    length = Headers(scope=scope).get("content-length", "")
    return int(length) if length.isdigit() else 0


def _check(size: int, limit: int, streamed: bool) -> None:
    if size > limit:
        error = DomainError(R.INVALID_PARAMETER_VALUE, f"body is larger than {limit} bytes")
        raise error if streamed else Refusal(error)
