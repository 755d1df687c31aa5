"""Webhooks end to end, on both stores: signed with each handler's keys, https unless the
campaign is for a private test partner, sent only to addresses checked after DNS (private
ones only when allow-listed), and an answer read no further than its size limit and no
longer than the attempt's time.

The partner is the simulator (`services.partner`), or a hostile one in this process that
answers too much or too slowly; every service runs as its own process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.support.processes import WEBHOOK_KEYS, WEBHOOK_SECRETS, Service, System
from shared import signing
from shared.signing import Key
from tests.conftest import running
from tests.support.api import Api
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e
# A handler with keys of its own; every other handler has those of `*` (WEBHOOK_SECRETS).
VAULT_KEY = Key("vault-1", "vault-webhook-secret-1")
SECRETS = f"{WEBHOOK_SECRETS};vault={VAULT_KEY.key_id}:{VAULT_KEY.secret}"
MAX_RESPONSE_BYTES = 64 * 1024  # the worker's default (REDEEM_WEBHOOK_MAX_RESPONSE_BYTES)


@pytest.fixture
def hooks(each_store_env: dict[str, str], tmp_path: Path) -> Iterator[System]:
    """The system on each store, with keys for any handler and keys of vault's own."""
    with running({**each_store_env, "REDEEM_WEBHOOK_SECRETS": SECRETS}, tmp_path) as system:
        yield system


@pytest.fixture
async def api(hooks: System) -> AsyncIterator[Api]:
    intake, _, _ = hooks.start_all("intake", "worker", "results")
    client = Api(intake.url)
    yield client
    await client.close()


async def requests_seen(partner: Service, scan: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=partner.url) as http:
        seen = (await http.get("/requests")).json()
    return [r for r in seen if r["scanCode"] == scan]


async def signed_post(
    partner: Service, scan: str, key: Key, *, signed_url: str | None = None
) -> int:
    """A request to the partner signed by hand with `key`, for `signed_url` (its own URL
    unless given): the status it answers."""
    url = partner.url + "/fulfil"
    request = {"scanCode": scan, "redemptionId": f"r-{scan}", "attempt": 0, "operation": "redeem"}
    body = json.dumps(request).encode()
    now_ms = int(time.time() * 1000)
    headers = signing.headers(key, "POST", signed_url or url, now_ms, f"r-{scan}:0", body)
    async with httpx.AsyncClient() as http:
        answer = await http.post(url, content=body, headers=headers)
    return answer.status_code


def failure_of(code: dict[str, Any]) -> str:
    """Why the code's attempt failed, as its history says."""
    [failed] = [entry for entry in code["history"] if entry["action"] == "fail"]
    return str(failed["reason"])


def webhook_campaign(url: str, **fields: Any) -> dict[str, Any]:
    """A campaign calling `url` (plain http, to loopback: for a private test partner)."""
    return {
        "handler": "hook",
        "handlerTransport": "webhook",
        "webhookUrl": url,
        "privateTestPartner": True,
        "timeout": 6,
    } | fields


async def test_webhooks_are_signed_and_retried_on_5xx_but_not_on_4xx(
    api: Api, hooks: System
) -> None:
    partner = hooks.start("partner", REDEEM_PARTNER_HANDLER="hook")
    await api.campaign("hooked", **webhook_campaign(partner.url + "/fulfil"))
    await api.code("hooked", "OK")
    await api.code("hooked", "DOWN", customCodeInfo={"simulate": {"httpStatus": 503}})
    await api.code("hooked", "NO", customCodeInfo={"simulate": {"httpStatus": 400}})
    once = {"httpStatus": 502, "httpStatusTries": 1}
    await api.code("hooked", "BLIP", customCodeInfo={"simulate": once})
    await api.code("hooked", "SLOW", customCodeInfo={"simulate": {"slowTries": 1}})

    ok = await api.redeem("bo", "OK", codeType="hooked")
    assert ok.status_code == 200, ok.text  # the simulator answers 401 to a bad signature
    down = await api.redeem("bo", "DOWN", codeType="hooked")
    assert down.json()["reasonCode"] == 40756, down.text
    refused = await api.redeem("bo", "NO", codeType="hooked")
    assert refused.json()["reasonCode"] == 40751, refused.text

    blip = await api.redeem("bo", "BLIP", codeType="hooked")
    assert blip.status_code == 200, blip.text
    slow = await api.redeem("bo", "SLOW", codeType="hooked")
    assert slow.status_code == 200, slow.text

    down_tries = await requests_seen(partner, "DOWN")
    assert len(down_tries) == 3  # tried again on 5xx
    key = f"{down.headers['x-redemption-id']}:0"
    assert {r["idempotencyKey"] for r in down_tries} == {key}  # the same on every try
    assert len(await requests_seen(partner, "BLIP")) == 2
    assert len(await requests_seen(partner, "SLOW")) == 2  # tried again after a timeout
    assert len(await requests_seen(partner, "NO")) == 1  # a 4xx is final
    no = await api.lookup("hooked", "NO")
    assert no["response"]["errorCode"] == "WEBHOOK_REFUSED"
    async with httpx.AsyncClient(base_url=partner.url) as http:
        unsigned = await http.post("/fulfil", json={"scanCode": "X"})
    assert unsigned.status_code == 401

    # Workers sign with the newest key; the partner verifies by the key id named, so a key
    # still listed verifies (rotation), an unknown one or another URL does not.
    assert {r["keyId"] for r in await requests_seen(partner, "OK")} == {"test-2"}
    older = Key("test-1", WEBHOOK_KEYS["test-1"])
    assert await signed_post(partner, "BY-HAND-1", older) == 200
    assert await signed_post(partner, "BY-HAND-2", Key("test-0", "a-retired-secret-0123")) == 401
    elsewhere = "https://partner.example/fulfil"
    assert await signed_post(partner, "BY-HAND-3", older, signed_url=elsewhere) == 401


async def test_each_handler_signs_with_its_own_keys_and_one_without_keys_calls_nobody(
    api: Api, hooks: System
) -> None:
    vault = hooks.start("partner", REDEEM_PARTNER_HANDLER="vault")
    hook = hooks.start("partner", REDEEM_PARTNER_HANDLER="hook")
    await api.campaign("vaulted", **webhook_campaign(vault.url + "/fulfil", handler="vault"))
    # vault's calls sent to a partner of another handler, which knows only the `*` keys.
    await api.campaign("astray", **webhook_campaign(hook.url + "/fulfil", handler="vault"))
    await api.campaign("keyless", **webhook_campaign(hook.url + "/fulfil", handler="stranger"))
    for code_type, scan in [("vaulted", "V-1"), ("astray", "A-1"), ("keyless", "K-1")]:
        await api.code(code_type, scan)

    vaulted = await api.redeem("vi", "V-1", codeType="vaulted")
    assert vaulted.status_code == 200, vaulted.text
    assert [r["keyId"] for r in await requests_seen(vault, "V-1")] == [VAULT_KEY.key_id]
    assert await signed_post(vault, "BY-HAND-1", VAULT_KEY) == 200
    assert await signed_post(vault, "BY-HAND-2", Key("test-2", WEBHOOK_KEYS["test-2"])) == 401

    astray = await api.redeem("vi", "A-1", codeType="astray")
    assert astray.json()["reasonCode"] == 40751, astray.text
    code = await api.lookup("astray", "A-1")
    assert code["response"]["errorCode"] == "WEBHOOK_REFUSED"
    assert "HTTP 401" in failure_of(code)
    assert await requests_seen(hook, "A-1") == []  # refused before it was taken as a request

    # With keys for vault alone, a handler without any gets no call at all.
    [worker] = [s for s in hooks.services if s.name == "worker"]
    vault_only = f"vault={VAULT_KEY.key_id}:{VAULT_KEY.secret}"
    hooks.restart(worker, {"REDEEM_WEBHOOK_SECRETS": vault_only})
    keyless = await api.redeem("vi", "K-1", codeType="keyless")
    assert keyless.json()["reasonCode"] == 40756, keyless.text
    code = await api.lookup("keyless", "K-1")
    assert code["codeState"] == "Failed"
    assert code["response"]["errorCode"] == "HANDLER_NOT_FOUND"
    assert "no webhook key for handler 'stranger'" in failure_of(code)
    assert await requests_seen(hook, "K-1") == []


async def test_a_webhook_over_plain_http_needs_a_campaign_for_a_private_test_partner(
    api: Api,
) -> None:
    plain = {
        "handler": "hook",
        "handlerTransport": "webhook",
        "webhookUrl": "http://partner.example/fulfil",
    }
    refused = await api.http.post(
        "/v1/campaigns", headers=api.admin, json={"codeType": "plain", **plain}
    )
    assert (refused.status_code, refused.json()["reasonCode"]) == (422, 90426), refused.text
    assert "privateTestPartner" in refused.json()["message"]
    assert (await api.http.get("/v1/campaigns/plain", headers=api.admin)).status_code == 404

    secure = await api.campaign("secure", **plain | {"webhookUrl": "https://partner.example/f"})
    assert secure["privateTestPartner"] is False
    edit = {"version": secure["version"], "webhookUrl": plain["webhookUrl"]}
    downgraded = await api.http.patch("/v1/campaigns/secure", headers=api.admin, json=edit)
    assert (downgraded.status_code, downgraded.json()["reasonCode"]) == (422, 90426)
    marked = await api.http.patch(
        "/v1/campaigns/secure", headers=api.admin, json=edit | {"privateTestPartner": True}
    )
    assert marked.status_code == 200, marked.text
    assert (marked.json()["webhookUrl"], marked.json()["privateTestPartner"]) == (
        plain["webhookUrl"],
        True,
    )


async def test_a_webhook_to_an_address_not_allow_listed_fails_its_attempt_with_the_reason(
    api: Api,
) -> None:
    # A cloud's metadata endpoint: link-local, and the tests allow-list loopback only.
    await api.campaign("metadata", **webhook_campaign("http://169.254.169.254/latest/meta-data/"))
    await api.code("metadata", "PEEK")

    peek = await api.redeem("bo", "PEEK", codeType="metadata")

    assert peek.json()["reasonCode"] == 40756, peek.text
    code = await api.lookup("metadata", "PEEK")
    assert code["codeState"] == "Failed"
    assert code["response"]["errorCode"] == "WEBHOOK_ADDRESS_REFUSED"
    refusal = "169.254.169.254 resolves to 169.254.169.254, a link-local address"
    assert refusal in failure_of(code) and "not allow-listed" in failure_of(code)


async def test_a_host_name_is_checked_by_the_addresses_it_resolves_to(
    api: Api, hooks: System
) -> None:
    partner = hooks.start("partner", REDEEM_PARTNER_HANDLER="hook")
    by_name = f"http://localhost:{partner.port}/fulfil"
    await api.campaign("named", **webhook_campaign(by_name))
    await api.code("named", "ALLOWED")
    await api.code("named", "REFUSED")
    allowed = await api.redeem("bo", "ALLOWED", codeType="named")
    assert allowed.status_code == 200, allowed.text  # loopback, allow-listed by the tests

    [worker] = [s for s in hooks.services if s.name == "worker"]
    hooks.restart(worker, {"REDEEM_WEBHOOK_ALLOWED_NETWORKS": ""})  # loopback no longer
    refused = await api.redeem("bo", "REFUSED", codeType="named")

    assert refused.json()["reasonCode"] == 40756, refused.text
    code = await api.lookup("named", "REFUSED")
    assert (code["codeState"], code["response"]["errorCode"]) == (
        "Failed",
        "WEBHOOK_ADDRESS_REFUSED",
    )
    assert re.search(r"localhost resolves to \S+, a loopback address", failure_of(code))
    assert "not allow-listed" in failure_of(code)
    assert await requests_seen(partner, "REFUSED") == []


async def test_webhook_polls_never_reuse_the_calls_idempotency_key(api: Api, hooks: System) -> None:
    partner = hooks.start("partner", REDEEM_PARTNER_HANDLER="hook", REDEEM_PARTNER_MODE="async")
    await api.campaign(
        "polled",
        **webhook_campaign(partner.url + "/fulfil", timeout=20, pollInterval=0.3),
        **{"async": True},
    )
    await api.code("polled", "LATER", customCodeInfo={"simulate": {"delayS": 1.0}})
    later = await api.redeem("bo", "LATER", codeType="polled", wait=15)
    assert later.status_code == 200, later.text  # a 422 for a reused key would fail it
    seen = await requests_seen(partner, "LATER")
    call = f"{later.json()['redemptionId']}:0"
    assert [r["idempotencyKey"] for r in seen if r["operation"] == "redeem"] == [call]
    polls = [r["idempotencyKey"] for r in seen if r["operation"] == "async"]
    assert polls and len(set(polls)) == len(polls) and call not in polls


@dataclass
class Call:
    """One connection a webhook call made: when it came and when the worker hung up."""

    scan: str
    opened_at: float
    closed_at: float | None = None


Answer = Callable[[asyncio.StreamWriter], Coroutine[Any, Any, None]]
HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"


async def endless(writer: asyncio.StreamWriter) -> None:
    """A JSON answer that never ends, sent as fast as it is read."""
    writer.write(HEAD + b"transfer-encoding: chunked\r\n\r\n")
    chunk = b'{"pad": "' + b"x" * 16_000
    while True:
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()
        chunk = b"x" * 16_000


async def declared(writer: asyncio.StreamWriter) -> None:
    """An answer that says it is 100 MB long, then sends nothing."""
    writer.write(HEAD + b"content-length: 100000000\r\n\r\n{")
    await writer.drain()
    await asyncio.sleep(3600)


async def drip(writer: asyncio.StreamWriter) -> None:
    """Its headers at once, then a byte of body every 100 ms for ever: no read waits long."""
    writer.write(HEAD + b"transfer-encoding: chunked\r\n\r\n")
    while True:
        writer.write(b"1\r\n \r\n")
        await writer.drain()
        await asyncio.sleep(0.1)


@dataclass
class HostilePartner:
    """A partner on loopback answering each webhook as its scan code's `Answer` says."""

    answers: dict[str, Answer]
    calls: list[Call] = field(default_factory=list)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        assert length is not None
        body = json.loads(await reader.readexactly(int(length[1])))
        call = Call(body["scanCode"], time.monotonic())
        self.calls.append(call)
        answering = asyncio.create_task(self.answers[call.scan](writer))
        with contextlib.suppress(ConnectionError):
            await reader.read()  # until the worker hangs up
        call.closed_at = time.monotonic()
        answering.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await answering
        writer.close()

    def of(self, scan: str) -> list[Call]:
        return [call for call in self.calls if call.scan == scan]

    async def hung_up(self, scan: str, timeout_s: float = 5.0) -> list[Call]:
        """The calls for `scan`, once the worker hung up on each."""

        async def calls() -> list[Call]:
            return self.of(scan)

        return await eventually(
            calls,
            until=lambda found: bool(found) and all(c.closed_at is not None for c in found),
            timeout_s=timeout_s,
            what=f"the worker to hang up on {scan}",
        )


@pytest.fixture
async def hostile() -> AsyncIterator[tuple[HostilePartner, str]]:
    """A hostile partner and its webhook URL."""
    partner = HostilePartner({"HUGE": endless, "CLAIMS-HUGE": declared, "DRIP": drip})
    server = await asyncio.start_server(partner.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield partner, f"http://127.0.0.1:{port}/fulfil"


async def test_an_answer_beyond_the_size_limit_is_not_read_on_and_fails_the_attempt(
    api: Api, hostile: tuple[HostilePartner, str]
) -> None:
    partner, url = hostile
    await api.campaign("bloated", **webhook_campaign(url))
    for scan in ("HUGE", "CLAIMS-HUGE"):
        await api.code("bloated", scan)

        # Streamed without end, or declared too long: either way refused at the limit,
        # as the answer could never be read to its end.
        answer = await api.redeem("bo", scan, codeType="bloated")

        assert answer.json()["reasonCode"] == 40756, answer.text
        code = await api.lookup("bloated", scan)
        assert (code["codeState"], code["response"]["errorCode"]) == ("Failed", "BAD_RESPONSE")
        assert f"larger than {MAX_RESPONSE_BYTES} bytes" in failure_of(code)
        assert len(await partner.hung_up(scan)) == 1  # a bad answer is not asked for again


@pytest.mark.timeout(60)
async def test_a_partner_answering_a_byte_at_a_time_is_cut_off_at_the_attempts_deadline(
    api: Api, hostile: tuple[HostilePartner, str]
) -> None:
    timeout_s = 3  # each try at most 2 s (REDEEM_WEBHOOK_TIMEOUT_S), all tries within 3 s
    await api.campaign("dripping", **webhook_campaign(url=hostile[1], timeout=timeout_s))
    await api.code("dripping", "DRIP")
    partner = hostile[0]

    answer = await api.redeem("bo", "DRIP", codeType="dripping")

    assert answer.json()["reasonCode"] == 40751, answer.text
    code = await api.lookup("dripping", "DRIP")
    assert (code["codeState"], code["response"]["errorCode"]) == (
        "Failed",
        "ASYNC_PROCESSING_TIMEOUT",
    )
    assert f"no complete answer within the allowed {timeout_s} s" in failure_of(code)
    calls = await partner.hung_up("DRIP")
    assert 1 <= len(calls) <= 3
    first_at = calls[0].opened_at
    for call in calls:
        assert call.closed_at is not None
        assert call.closed_at - first_at <= timeout_s + 1.0, "no try outlived the attempt"
