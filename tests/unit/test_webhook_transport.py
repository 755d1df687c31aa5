"""The webhook transport: signed with the handler's newest key, connected only to checked
addresses, answers read up to a limit, every try within one deadline; whatever it
refuses fails the attempt with its reason, never a crash."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import httpcore

from services.worker.egress import CheckedBackend
from services.worker.transports import WebhookTransport
from shared import signing
from shared.domain import fulfillment
from shared.domain.addresses import AddressPolicy
from shared.domain.fulfillment import Result
from shared.domain.model import Campaign, CodeUseType
from shared.signing import Keyring
from tests.unit.fake_network import Network, Stream, answer

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
HOOKED = Campaign(
    "hooked",
    CodeUseType.SINGLE,
    NOW,
    NOW,
    handler="hook",
    handler_transport="webhook",
    webhook_url="https://partner.example/fulfil?region=eu",
)
REQUEST = {"redemptionId": "r-1", "attempt": 0, "operation": "redeem", "scanCode": "ABC"}
KEYS = Keyring.parse("hook=2026-01:old-secret-0123456789,2026-06:new-secret-0123456789")
PUBLIC = ("93.184.215.14",)
GRANTED = answer(200, b'{"success": true}')


def webhook(
    network: Network, resolved: tuple[str, ...] = PUBLIC, allowed: str = "", **options: Any
) -> WebhookTransport:
    async def resolve(host: str, port: int) -> list[str]:
        return list(resolved)

    backend = CheckedBackend(AddressPolicy.parse(allowed), resolver=resolve, inner=network)
    pool = httpcore.AsyncConnectionPool(network_backend=backend)
    return WebhookTransport(pool, KEYS, **options)


def answering(raw: bytes, drip_s: float | None = None) -> Network:
    return Network(lambda _: Stream(raw, drip_s))


async def call(transport: WebhookTransport, campaign: Campaign = HOOKED) -> Result | None:
    # Bounded from outside too, so that a transport that overran its time fails here.
    return await asyncio.wait_for(transport.call(campaign, REQUEST, 2.0), timeout=30)


async def test_a_webhook_is_signed_with_the_newest_key_and_sent_to_a_checked_address() -> None:
    network = answering(GRANTED)
    result = await call(webhook(network))

    assert result == Result(True, True, None)
    [stream] = network.streams
    line, headers, body = stream.request()
    assert line == "POST /fulfil?region=eu HTTP/1.1"
    assert json.loads(body) == REQUEST
    assert headers[signing.SIGNATURE_HEADER].startswith("keyId=2026-06,sha256=")
    assert headers[signing.IDEMPOTENCY_HEADER] == "r-1:0"
    now_ms = int(headers[signing.TIMESTAMP_HEADER])
    url = HOOKED.webhook_url or ""
    assert signing.refusal(KEYS.secrets("hook"), "POST", url, headers, body, now_ms) is None
    # Connected to the address checked; the name stays the host's for Host and TLS.
    assert network.connected == [("93.184.215.14", 443)]
    assert (headers["Host"], stream.server_name) == ("partner.example", "partner.example")


async def test_a_host_resolving_to_a_private_address_fails_the_attempt_unconnected() -> None:
    network = answering(GRANTED)
    result = await call(webhook(network, resolved=("93.184.215.14", "169.254.169.254")))

    assert result is not None and not result.success and result.complete
    assert result.error_code == fulfillment.WEBHOOK_ADDRESS_REFUSED
    assert "169.254.169.254, a link-local address that is not allow-listed" in (
        result.error_msg or ""
    )
    assert network.connected == []


async def test_a_private_test_partner_on_an_allow_listed_network_is_called_over_http() -> None:
    partner = dataclasses.replace(
        HOOKED, webhook_url="http://partner.test:8090/fulfil", private_test_partner=True
    )
    network = answering(GRANTED)
    transport = webhook(network, resolved=("10.20.0.5",), allowed="10.20.0.0/16")

    assert await call(transport, partner) == Result(True, True, None)
    assert network.connected == [("10.20.0.5", 8090)]


async def test_plain_http_is_refused_at_call_time_unless_for_a_private_test_partner() -> None:
    # A campaign stored before the rule, say: the worker holds it to the rule too.
    plain = dataclasses.replace(HOOKED, webhook_url="http://partner.example/fulfil")
    network = answering(GRANTED)

    result = await call(webhook(network), plain)

    assert result is not None and result.error_code == fulfillment.WEBHOOK_URL_REFUSED
    assert "webhookUrl must be https" in (result.error_msg or "")
    assert network.connected == []


async def test_an_answer_larger_than_the_limit_is_a_bad_response() -> None:
    big = b'{"success": true, "customRedemptionInfo": {"note": "' + b"x" * 200 + b'"}}'
    for raw in (answer(200, big), answer(200, big, length=False)):  # declared, or streamed
        result = await call(webhook(answering(raw), max_response_bytes=100))
        assert result is not None and result.error_code == fulfillment.BAD_RESPONSE
        assert result.error_msg == "the webhook's answer is larger than 100 bytes"
    assert await call(webhook(answering(answer(200, big)), max_response_bytes=len(big))) == (
        Result(True, True, {"note": "x" * 200})
    )


async def test_every_try_ends_within_the_attempts_time_however_slow_the_partner() -> None:
    # Headers at once, then a byte of body every 50 ms: no read ever waits long, so only a
    # deadline over the whole try ends it. The attempt's time is the tries' one deadline.
    drip = answering(answer(200, b" " * 1000)[:-1000], drip_s=0.05)
    transport = webhook(drip, try_timeout_s=60.0)

    result = await asyncio.wait_for(transport.call(HOOKED, REQUEST, 0.5), timeout=30)

    assert result is None  # no answer in time: the attempt's timeout decides
    assert len(drip.connected) == 1  # the one try used the whole time; none was left


async def test_a_handler_without_a_webhook_key_fails_with_handler_not_found() -> None:
    network = answering(GRANTED)
    keyless = dataclasses.replace(HOOKED, handler="other")

    result = await call(webhook(network), keyless)

    assert result is not None and result.error_code == fulfillment.HANDLER_MISSING
    assert "REDEEM_WEBHOOK_SECRETS" in (result.error_msg or "")
    assert network.connected == []
