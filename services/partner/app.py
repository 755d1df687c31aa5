"""The partner simulator: answers fulfillment requests over AMQP and HTTP (webhook).

Over AMQP it consumes `redemption.fulfillment` with its handler name as the
routing key. In `sync` mode it replies to `reply_to` after the delay; in
`async` mode it answers later, with `async-response` on `redemption.commands`
once the attempt's delay has passed. Over HTTP, `POST /fulfil` checks the
webhook signature as the partner contract says (CONTRIBUTING.md), with its
handler's keys in `REDEEM_WEBHOOK_SECRETS`, by the key id the request names
(401 with the reason without a valid one), and answers as the campaign's
mode asks. A silent attempt gets no answer at all. `GET /requests` lists the
requests received, newest last, for whoever watches.

Like a partner that follows the IETF Idempotency-Key draft, it answers 422
to a request whose `Idempotency-Key` it saw before with another body.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter, OrderedDict, deque
from collections.abc import Mapping
from typing import Any, Literal

import structlog
from aio_pika.abc import AbstractIncomingMessage
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import signing, topology
from shared.adapters.rabbitmq import Broker
from shared.clock import to_ms, utcnow
from shared.handlers import simulation
from shared.messages import AsyncResponseCommand

log = structlog.get_logger()
SILENT_S = 3600.0


class PartnerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REDEEM_PARTNER_", extra="ignore")

    handler: str = Field("partner", description="the handler name it serves (routing key)")
    mode: Literal["sync", "async"] = "sync"
    delay_s: float = Field(0.0, ge=0, description="time until an attempt's outcome is known")
    failure_rate: float = Field(0.0, ge=0, le=1)
    silence_rate: float = Field(0.0, ge=0, le=1, description="attempts never answered")
    remember: int = Field(1000, ge=0, description="requests kept for GET /requests")
    api_key: str = Field(
        "", description="its fulfillment key, sent with each async-response (authorization)"
    )

    def behaviour(self) -> simulation.Behaviour:
        return simulation.Behaviour(self.delay_s, self.failure_rate, self.silence_rate)


class Partner:
    def __init__(
        self, settings: PartnerSettings, broker: Broker, secrets: Mapping[str, str]
    ) -> None:
        self._settings = settings
        self._broker = broker
        self._secrets = secrets  # secret by key id
        self.requests: deque[dict[str, Any]] = deque(maxlen=settings.remember)
        self._tasks: set[asyncio.Task[None]] = set()
        # Webhook tries per (redemptionCodeId, attempt), for the tries-limited behaviours.
        self._tries: Counter[tuple[Any, Any]] = Counter()
        # The body digest of each Idempotency-Key seen, the latest `remember` of them.
        self._bodies: OrderedDict[str, str] = OrderedDict()

    async def start(self) -> None:
        channel = self._broker.consuming
        queue = await channel.declare_queue(
            f"redemption.partner.{self._settings.handler}",
            durable=True,
            arguments={"x-queue-type": "quorum"},
        )
        await queue.bind(topology.FULFILLMENT_EXCHANGE, routing_key=self._settings.handler)
        await queue.consume(self._on_request)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _plan(self, request: Mapping[str, Any], via: str) -> simulation.Plan:
        self.requests.append({"via": via, **request})
        return simulation.plan(request, self._settings.behaviour())

    async def _on_request(self, message: AbstractIncomingMessage) -> None:
        try:
            request = json.loads(message.body)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            log.warning("ignoring a malformed request")
            await message.ack()
            return
        chosen = self._plan(request | {"idempotencyKey": message.message_id}, "amqp")
        await message.ack()
        if chosen.silent:
            return
        if self._settings.mode == "async" or request.get("async"):
            self._spawn(self._push_when_ready(request, chosen))
        elif message.reply_to:
            self._spawn(self._reply_later(message, request, chosen))

    def _spawn(self, work: Any) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _reply_later(
        self, message: AbstractIncomingMessage, request: Mapping[str, Any], chosen: simulation.Plan
    ) -> None:
        await asyncio.sleep(chosen.delay_s)
        body = json.dumps(simulation.outcome(request, chosen)).encode()
        await self._broker.publish(
            "", message.reply_to or "", body, correlation_id=message.correlation_id
        )

    async def _push_when_ready(self, request: Mapping[str, Any], chosen: simulation.Plan) -> None:
        started = int(request.get("attemptedAt") or to_ms(utcnow()) or 0)
        ready_in = started / 1000 + chosen.delay_s - (to_ms(utcnow()) or 0) / 1000
        await asyncio.sleep(max(0.0, ready_in))
        command = AsyncResponseCommand(
            redemptionId=str(request.get("redemptionId")),
            scanCode=request.get("scanCode"),
            redemptionCodeId=request.get("redemptionCodeId"),
            codeType=request.get("codeType"),
            attempt=int(request.get("attempt") or 0),
            asyncResponse=dict(simulation.outcome(request, chosen)),
        )
        await self._broker.publish(
            topology.COMMANDS_EXCHANGE,
            topology.ASYNC_RESPONSE_ROUTING_KEY,
            command.model_dump_json().encode(),
            headers={topology.AUTHORIZATION_HEADER: f"Bearer {self._settings.api_key}"},
        )

    async def webhook(self, request: Request) -> Response:
        body = await request.body()
        headers = request.headers
        refused = signing.refusal(
            self._secrets, request.method, str(request.url), headers, body, to_ms(utcnow()) or 0
        )
        if refused is not None:
            return JSONResponse({"error": f"bad signature: {refused}"}, status_code=401)
        key = headers.get(signing.IDEMPOTENCY_HEADER)
        if not self._same_body(key, body):
            return JSONResponse({"error": "Idempotency-Key reused"}, status_code=422)
        payload = json.loads(body)
        signed_with = signing.signed_with(headers.get(signing.SIGNATURE_HEADER))
        seen = {"idempotencyKey": key, "keyId": signed_with[0] if signed_with else None}
        chosen = self._plan(payload | seen, "webhook")
        tried = self._tries[(payload.get("redemptionCodeId"), payload.get("attempt"))]
        self._tries[(payload.get("redemptionCodeId"), payload.get("attempt"))] += 1
        failing = chosen.http_status_tries is None or tried < chosen.http_status_tries
        if chosen.http_status is not None and failing:
            return JSONResponse({"error": "simulated"}, status_code=chosen.http_status)
        if chosen.silent or tried < chosen.slow_tries:
            await asyncio.sleep(SILENT_S)
        if self._settings.mode == "async" or payload.get("async"):
            answer = simulation.async_answer(payload, chosen, to_ms(utcnow()) or 0)
            return JSONResponse(dict(answer))
        await asyncio.sleep(chosen.delay_s)
        return JSONResponse(dict(simulation.outcome(payload, chosen)))

    def _same_body(self, key: str | None, body: bytes) -> bool:
        """Whether `body` is the one first sent under `key` (or the key is new)."""
        if key is None:
            return True
        digest = hashlib.sha256(body).hexdigest()
        first = self._bodies.setdefault(key, digest)
        self._bodies.move_to_end(key)
        while len(self._bodies) > max(self._settings.remember, 1):
            self._bodies.popitem(last=False)
        return first == digest


def routes(app: FastAPI, partner: Partner) -> None:
    app.add_api_route("/fulfil", partner.webhook, methods=["POST"])

    @app.get("/requests")
    async def requests() -> list[dict[str, Any]]:
        return list(partner.requests)
