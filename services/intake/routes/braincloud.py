"""The brainCloud front door's routes: `POST /dispatcherv2` (clients) and
`POST /s2sdispatcher` (servers).

Every answer is an HTTP 200 with JSON, a refusal included: brainCloud's libraries
stall for good after any other status.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from services.intake.braincloud.packets import MAX_PACKET_BYTES, refusal
from services.intake.routes.deps import ClientDoorDep, ServerDoorDep
from shared.domain.reasons import DomainError, ReasonCode

router = APIRouter(tags=["brainCloud"])
CLIENT_PATH = "/dispatcherv2"
SERVER_PATH = "/s2sdispatcher"
# Read by the route itself, to its own limit, so that an oversized packet is answered
# as the libraries expect (`BodyLimit` raises inside the stream for such a route).
STREAMED = {("POST", CLIENT_PATH): MAX_PACKET_BYTES, ("POST", SERVER_PATH): MAX_PACKET_BYTES}


@router.post(CLIENT_PATH, response_model=None)
async def dispatcher(request: Request, door: ClientDoorDep) -> Response:
    """A packet of brainCloud's client protocol, signed with `X-SIG` (see the README's
    "Moving from brainCloud")."""
    try:
        body = await _body(request)
    except DomainError as error:
        return _answer({"packetId": None, "responses": [refusal(_too_large(error))]})
    answer = await door.answer(
        body,
        app_id=request.headers.get("x-appid"),
        signature=request.headers.get("x-sig"),
        client_address=request.client.host if request.client else None,
    )
    return _answer(answer)


@router.post(SERVER_PATH, response_model=None)
async def s2s_dispatcher(request: Request, door: ServerDoorDep) -> Response:
    """A packet (or a stateless request) of brainCloud's server-to-server protocol (see
    the README's "Moving from brainCloud")."""
    try:
        body = await _body(request)
    except DomainError as error:
        return _answer({"packetId": None, "messageResponses": [refusal(_too_large(error))]})
    client_address = request.client.host if request.client else None
    return _answer(await door.answer(body, client_address=client_address))


class FrontDoorCors:
    """CORS for the front door's routes alone, for game clients in a browser on the
    origins given (`REDEEM_BRAINCLOUD_CORS_ORIGINS`); the rest of the API has none."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["POST"],
            allow_headers=["Content-Type", "X-SIG", "X-APPID"],
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        at_door = scope["type"] == "http" and scope["path"] in (CLIENT_PATH, SERVER_PATH)
        await (self.cors if at_door else self.app)(scope, receive, send)


async def _body(request: Request) -> bytes:
    chunks = [chunk async for chunk in request.stream()]
    return b"".join(chunks)


def _too_large(error: DomainError) -> DomainError:
    return DomainError(ReasonCode.MESSAGE_TOO_LARGE, error.message)


def _answer(answer: dict[str, Any]) -> Response:
    """The answer as ASCII JSON: a caller's text echoed in it may hold anything JSON
    can, a lone surrogate included, which UTF-8 cannot."""
    return Response(json.dumps(answer), status_code=200, media_type="application/json")
