"""How a worker reaches a campaign's fulfillment handler (`handlerTransport`).

- `local`: a Python callable installed under the `redemption.handlers` entry points;
- `amqp`: a request on the `redemption.fulfillment` exchange, routed by handler
  name. A synchronous partner replies to `reply_to`; an asynchronous one
  answers later with `ProcessAsynchronousResponse`;
- `webhook`: an HTTP POST to the campaign's `webhookUrl`, signed (see
  `shared.signing`), retried on timeouts and 5xx, never on 4xx, connected
  only to addresses checked after resolution (`services.worker.egress`).

Each returns the handler's answer checked (`fulfillment.Result`), or None
when no answer came within the time given.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpcore
import httpx
import structlog
from aio_pika.abc import AbstractIncomingMessage

from services.worker.egress import AddressRefused
from shared import signing, topology
from shared.adapters.rabbitmq import Broker
from shared.clock import new_id, to_ms, utcnow
from shared.domain import fulfillment
from shared.domain.fulfillment import Result
from shared.domain.model import Campaign
from shared.domain.reasons import DomainError
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

    Every try of one call fits in the time given (`timeout_s`: one deadline for
    all of them), each in at most `try_timeout_s` of it, whatever the partner
    sends and however slowly. An answer is read up to `max_response_bytes`; a
    bigger one is a bad response. Each try is signed anew with the handler's
    newest key (`shared.signing`) and carries the same `Idempotency-Key` (see
    `idempotency_key`), so a partner can tell a repeat. The connections are
    `pool`'s, made only to addresses its backend checked
    (`services.worker.egress`): a refused URL or address fails the attempt
    with its reason and is not tried again.
    """

    def __init__(
        self,
        pool: httpcore.AsyncConnectionPool,
        keys: signing.Keyring,
        *,
        try_timeout_s: float = 10.0,
        tries: int = 3,
        pause_s: float = 0.2,
        max_response_bytes: int = 64 * 1024,
    ) -> None:
        self._pool = pool
        self._keys = keys
        self._try_timeout_s = try_timeout_s
        self._tries = tries
        self._pause_s = pause_s
        self._max_response_bytes = max_response_bytes

    async def call(
        self, campaign: Campaign, request: Mapping[str, Any], timeout_s: float
    ) -> Result | None:
        key = self._keys.signing_key(campaign.handler or "")
        if key is None:
            return _failure(
                fulfillment.HANDLER_MISSING,
                f"no webhook key for handler {campaign.handler!r} (REDEEM_WEBHOOK_SECRETS)",
            )
        try:
            campaign.check_webhook_url()
            target = _target(campaign.webhook_url or "")
        except (DomainError, httpx.InvalidURL) as refused:
            return _failure(fulfillment.WEBHOOK_URL_REFUSED, str(refused))
        call = _Call(campaign.webhook_url or "", target, key, json.dumps(request).encode())
        return await self._tried(campaign, call, idempotency_key(request), timeout_s)

    async def _tried(
        self, campaign: Campaign, call: _Call, idempotency: str, timeout_s: float
    ) -> Result | None:
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + timeout_s
        last, timed_out = "no answer", False
        for _ in range(self._tries):
            left = give_up_at - loop.time()
            if left <= 0:
                break
            try:
                async with asyncio.timeout(min(left, self._try_timeout_s)):
                    status, body = await self._post(call, idempotency)
            except (TimeoutError, httpcore.TimeoutException):
                last, timed_out = "timed out", True
                continue
            except AddressRefused as refused:
                return _failure(fulfillment.WEBHOOK_ADDRESS_REFUSED, str(refused))
            except _TRANSPORT_ERRORS as exc:
                last, timed_out = f"{type(exc).__name__}: {exc}", False
            except Exception as exc:  # a failed attempt, never a crashed worker
                log.warning("webhook call failed", url=call.url, exc_info=True)
                return _failure(fulfillment.HANDLER_CRASHED, f"{type(exc).__name__}: {exc}")
            else:
                if status < 500:
                    return self._answer(campaign, status, body)
                last, timed_out = f"HTTP {status}", False
            await asyncio.sleep(min(self._pause_s, max(0.0, give_up_at - loop.time())))
        log.info("webhook gave no answer", url=call.url, last=last)
        return None if timed_out else _failure(fulfillment.HANDLER_CRASHED, last)

    async def _post(self, call: _Call, idempotency: str) -> tuple[int, bytes | None]:
        """One try: the status and the answer, None when it is larger than allowed."""
        now_ms = to_ms(utcnow()) or 0
        headers = signing.headers(call.key, "POST", call.url, now_ms, idempotency, call.body)
        headers["Content-Type"] = "application/json"
        async with self._pool.stream(
            "POST", call.target, headers=list(headers.items()), content=call.body
        ) as response:
            return response.status, await _read_at_most(response, self._max_response_bytes)

    def _answer(self, campaign: Campaign, status: int, body: bytes | None) -> Result:
        if status >= 400:
            text = (body or b"")[:200].decode(errors="replace")
            return _failure(fulfillment.WEBHOOK_REFUSED, f"HTTP {status}: {text}")
        if body is None:
            return _failure(
                fulfillment.BAD_RESPONSE,
                f"the webhook's answer is larger than {self._max_response_bytes} bytes",
            )
        if status >= 300:
            return _failure(fulfillment.BAD_RESPONSE, f"HTTP {status}: redirects are not followed")
        try:
            answer = json.loads(body)
        except ValueError:
            return _failure(fulfillment.BAD_RESPONSE, "the webhook's answer is not JSON")
        return fulfillment.interpret(answer, is_async=campaign.is_async)


@dataclass(frozen=True)
class _Call:
    """One webhook call: the URL as the campaign has it (and signs), where it goes, the
    key that signs it and its body."""

    url: str
    target: httpcore.URL
    key: signing.Key
    body: bytes


# What a try can fail with besides a timeout: tried again while time is left.
_TRANSPORT_ERRORS = (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol)


def _target(url: str) -> httpcore.URL:
    """Where `url` goes, its host in IDNA (as httpx reads a URL)."""
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise httpx.InvalidURL(f"webhookUrl {url!r} is not an http(s) URL with a host")
    return httpcore.URL(
        scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
    )


async def _read_at_most(response: httpcore.Response, limit: int) -> bytes | None:
    """The body of `response`, or None as soon as it is known to be over `limit` bytes."""
    declared = next((v for k, v in response.headers if k.lower() == b"content-length"), b"")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in response.aiter_stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


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
