"""How a worker reaches a campaign's fulfillment handler (`handlerTransport`).

- `local`: a Python callable installed under the `redemption.handlers` entry points;
- `amqp`: a request on the `redemption.fulfillment` exchange, routed by handler
  name. A synchronous partner replies to `reply_to`; an asynchronous one
  answers later with `ProcessAsynchronousResponse`;
- `webhook`: an HTTP POST to the campaign's `webhookUrl`, signed (see
  `shared.signing`), retried on timeouts and 5xx, never on 4xx.

Each returns the handler's answer checked (`fulfillment.Result`), or None
when no answer came within the time given.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, Protocol

import httpx
import structlog
from aio_pika.abc import AbstractIncomingMessage

from shared import signing, topology
from shared.adapters.rabbitmq import Broker
from shared.clock import new_id, to_ms, utcnow
from shared.domain import fulfillment
from shared.domain.fulfillment import Result
from shared.domain.model import Campaign
from shared.ports import FulfillmentHandler

log = structlog.get_logger()
# What an asynchronous partner's first answer is taken to be when it answers later.
SENT = Result(True, False)


class Transport(Protocol):
    async def call(
        self, campaign: Campaign, request: Mapping[str, Any], timeout_s: float
    ) -> Result | None: ...


def idempotency_key(request: Mapping[str, Any]) -> str:
    """The key of one request to a partner: the same key, the same body.

    An attempt's call is `<redemptionId>:<attempt>`, the same for every try
    and after any crash. Each poll is a request of its own
    (`<redemptionId>:<attempt>:poll:<n>`, `n` unique), so a partner that
    caches answers by key never answers a poll with an earlier one, nor sees
    one key with two bodies. Grants are deduplicated by `redemptionId`,
    which stays the same across attempts (see CONTRIBUTING's partner contract).
    """
    key = f"{request.get('redemptionId')}:{request.get('attempt')}"
    if request.get("operation") == "redeem":
        return key
    return f"{key}:poll:{new_id()}"


def _failure(error_code: str, error_msg: str) -> Result:
    return Result(False, True, None, error_code, error_msg[:500])


class LocalTransport:
    def __init__(self, handlers: Mapping[str, FulfillmentHandler]) -> None:
        self._handlers = handlers

    async def call(
        self, campaign: Campaign, request: Mapping[str, Any], timeout_s: float
    ) -> Result | None:
        handler = self._handlers.get(campaign.handler or "")
        if handler is None:
            return _failure(
                fulfillment.HANDLER_MISSING, f"no handler named {campaign.handler!r} is installed"
            )
        try:
            answer = await asyncio.wait_for(handler(request), timeout=timeout_s)
        except TimeoutError:
            return None
        except Exception as exc:
            log.warning("handler crashed", handler=campaign.handler, exc_info=True)
            return _failure(fulfillment.HANDLER_CRASHED, f"{type(exc).__name__}: {exc}")
        return fulfillment.interpret(answer, is_async=campaign.is_async)


class AmqpTransport:
    """Requests to partners over RabbitMQ; replies come back on this worker's own queue."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._waiting: dict[str, asyncio.Future[bytes]] = {}
        self._reply_to: str | None = None

    async def start(self) -> None:
        self._reply_to = (await self._broker.consume_replies(self._on_reply)).queue_name

    async def call(
        self, campaign: Campaign, request: Mapping[str, Any], timeout_s: float
    ) -> Result | None:
        assert self._reply_to is not None, "start() first"
        correlation_id, key = new_id(), idempotency_key(request)
        body = json.dumps(request).encode()
        if campaign.is_async:
            await self._send(campaign, body, key, correlation_id)
            return SENT
        reply = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = reply
        try:
            await self._send(campaign, body, key, correlation_id)
            raw = await asyncio.wait_for(reply, timeout=timeout_s)
        except TimeoutError:
            return None
        finally:
            self._waiting.pop(correlation_id, None)
        try:
            answer = json.loads(raw)
        except ValueError:
            return _failure(fulfillment.BAD_RESPONSE, "the partner's reply is not JSON")
        return fulfillment.interpret(answer, is_async=False)

    async def _send(self, campaign: Campaign, body: bytes, key: str, correlation_id: str) -> None:
        try:
            await self._broker.publish(
                topology.FULFILLMENT_EXCHANGE,
                campaign.handler or "",
                body,
                message_id=key,
                correlation_id=correlation_id,
                reply_to=self._reply_to,
            )
        except Exception as exc:  # unroutable (no partner queue) or not confirmed
            raise PartnerUnreachable(f"{campaign.handler}: {exc}") from exc

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        reply = self._waiting.get(message.correlation_id or "")
        if reply is not None and not reply.done():
            reply.set_result(message.body)


class PartnerUnreachable(Exception):
    """The request could not be handed to the partner at all."""


class WebhookTransport:
    """Signed HTTP POSTs; a timeout or 5xx is tried again while time is left, a 4xx is final.

    Each try waits at most `try_timeout_s` (and never past the attempt's
    time); the answer of the first that is neither a timeout nor a 5xx
    counts. Every try of one request carries the same `Idempotency-Key` (see
    `idempotency_key`), so a partner can tell a repeat.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        secret: str,
        *,
        try_timeout_s: float = 10.0,
        tries: int = 3,
        pause_s: float = 0.2,
    ) -> None:
        self._client = client
        self._secret = secret
        self._try_timeout_s = try_timeout_s
        self._tries = tries
        self._pause_s = pause_s

    async def call(
        self, campaign: Campaign, request: Mapping[str, Any], timeout_s: float
    ) -> Result | None:
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + timeout_s
        body = json.dumps(request).encode()
        key = idempotency_key(request)
        last, timed_out = "no answer", False
        for _ in range(self._tries):
            left = give_up_at - loop.time()
            if left <= 0:
                break
            try:
                response = await self._post(campaign, body, key, min(left, self._try_timeout_s))
            except httpx.TimeoutException:
                last, timed_out = "timed out", True
                continue
            except httpx.TransportError as exc:
                last, timed_out = f"{type(exc).__name__}: {exc}", False
            else:
                if response.status_code < 500:
                    return self._answer(campaign, response)
                last, timed_out = f"HTTP {response.status_code}", False
            await asyncio.sleep(min(self._pause_s, max(0.0, give_up_at - loop.time())))
        log.info("webhook gave no answer", url=campaign.webhook_url, last=last)
        return None if timed_out else _failure(fulfillment.HANDLER_CRASHED, last)

    async def _post(
        self, campaign: Campaign, body: bytes, key: str, timeout_s: float
    ) -> httpx.Response:
        headers = signing.headers(self._secret, to_ms(utcnow()) or 0, body)
        headers["Content-Type"] = "application/json"
        headers["Idempotency-Key"] = key
        return await self._client.post(
            campaign.webhook_url or "", content=body, headers=headers, timeout=timeout_s
        )

    def _answer(self, campaign: Campaign, response: httpx.Response) -> Result:
        if response.status_code >= 400:
            return _failure(
                "WEBHOOK_REFUSED", f"HTTP {response.status_code}: {response.text[:200]}"
            )
        try:
            answer = response.json()
        except ValueError:
            return _failure(fulfillment.BAD_RESPONSE, "the webhook's answer is not JSON")
        return fulfillment.interpret(answer, is_async=campaign.is_async)


class Transports:
    """The transport each campaign names."""

    def __init__(
        self, local: LocalTransport, amqp: AmqpTransport | None, webhook: WebhookTransport | None
    ) -> None:
        self._by_name: dict[str, Transport] = {"local": local}
        if amqp is not None:
            self._by_name["amqp"] = amqp
        if webhook is not None:
            self._by_name["webhook"] = webhook

    async def call(
        self, campaign: Campaign, request: Mapping[str, Any], timeout_s: float
    ) -> Result | None:
        transport = self._by_name.get(campaign.handler_transport)
        if transport is None:
            return _failure(
                fulfillment.HANDLER_MISSING,
                f"this worker has no {campaign.handler_transport!r} transport",
            )
        try:
            return await transport.call(campaign, request, timeout_s)
        except PartnerUnreachable as exc:
            return _failure("PARTNER_UNREACHABLE", str(exc))
