"""Fulfillment end to end: partners over AMQP, timers, retries, async responses.

The partner is the simulator (`services.partner`) or the in-process
`simulated-partner` handler; every service runs as its own process. Webhooks
have their own module, run on both stores (`test_webhooks.py`).
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

import httpx
import pytest

from bench.support.processes import Service, System
from shared import topology
from shared.adapters.mongodb import MongoStore
from shared.adapters.rabbitmq import Broker
from shared.clock import from_ms
from shared.domain.model import Code, CodeRef
from shared.domain.states import Action, CodeState
from tests.support.amqp import Tap
from tests.support.api import Api
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e
PARTNER_KEY = {"Authorization": "Bearer test-partner-key"}


async def final_code(store: MongoStore, ref: CodeRef, timeout_s: float = 30) -> Code:
    """The code once its redemption is over: redeemed, or failed with no retry left."""
    code = await eventually(
        lambda: store.get_code(ref),
        until=lambda c: (
            c is not None
            and c.timer_at is None
            and (
                c.code_state is CodeState.REDEEMED
                or (c.code_state is CodeState.FAILED and c.retry_at is None)
            )
        ),
        timeout_s=timeout_s,
        what=f"{ref.key} to end",
    )
    assert code is not None
    return code


async def requests_seen(partner: Service, scan: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=partner.url) as http:
        seen = (await http.get("/requests")).json()
    return [r for r in seen if r["scanCode"] == scan]


async def test_amqp_partners_answer_by_reply_or_later_by_async_response(
    api: Api, system: System
) -> None:
    sync = system.start("partner", REDEEM_PARTNER_HANDLER="stock", REDEEM_PARTNER_DELAY_S="0.2")
    system.start(
        "partner",
        REDEEM_PARTNER_HANDLER="mint",
        REDEEM_PARTNER_MODE="async",
        REDEEM_PARTNER_DELAY_S="1",
    )
    await api.campaign("stock", handler="stock", handlerTransport="amqp", timeout=10)
    await api.campaign(
        "mint",
        handler="mint",
        handlerTransport="amqp",
        timeout=10,
        pollInterval=30,
        **{"async": True},
    )
    await api.code("stock", "S-1")
    await api.code("mint", "M-1")

    stocked = await api.redeem("ann", "S-1", codeType="stock", customRedemptionInfo={"size": "L"})
    assert stocked.status_code == 200, stocked.text
    assert stocked.json()["customRedemptionInfo"] == {
        "size": "L",
        "partner": "simulated",
        "attempt": 0,
    }
    [request] = await requests_seen(sync, "S-1")
    assert (request["via"], request["operation"], request["userId"]) == ("amqp", "redeem", "ann")
    assert request["redemptionId"] == stocked.json()["redemptionId"]

    minted = await api.redeem("ann", "M-1", codeType="mint", wait=None)
    rid = minted.json()["redemptionId"]
    record = await eventually(
        lambda: api.redemption(rid),
        until=lambda a: a.json().get("status") == "Redeemed",
        what="the async partner's answer",
    )
    code = record.json()["code"]
    assert code["attemptState"] == "Succeeded" and code["response"]["complete"] is True


def _entries(code: Code, action: Action) -> list[datetime]:
    return [h.at for h in code.history if h.action is action]


def _late_s(at: datetime, due: datetime) -> float:
    return (at - due).total_seconds()


async def test_timeouts_and_retries_fire_on_time_then_the_code_stays_failed(
    api: Api, store: MongoStore
) -> None:
    backoff = {"initial": 1, "multiplier": 2, "max": 30}
    await api.campaign(
        "silent",
        handler="simulated-partner",
        timeout=2,
        maxRetries=2,
        retryBackoff=backoff,
        pollInterval=0.5,
        **{"async": True},
    )
    await api.code("silent", "QUIET", customCodeInfo={"simulate": {"silent": True}})
    await api.redeem("cy", "QUIET", codeType="silent", wait=None)

    code = await final_code(store, CodeRef("silent", "QUIET"))

    assert code.code_state is CodeState.FAILED and code.error_code == "ASYNC_PROCESSING_TIMEOUT"
    starts = _entries(code, Action.REDEEM) + _entries(code, Action.RETRY)
    failures = _entries(code, Action.FAIL)
    assert len(starts) == len(failures) == 3
    for started, failed in zip(starts, failures, strict=True):
        assert 0 <= _late_s(failed, started) - 2 <= 1, "a timeout fires within 1 s of its deadline"
    for n, (failed, retried) in enumerate(zip(failures, starts[1:], strict=False)):
        pause = backoff["initial"] * 2**n
        assert abs(_late_s(retried, failed) - pause) <= max(0.1 * pause, 1.0)
    # Only its user learns that it failed for good; to anyone else it is someone else's.
    again = await api.redeem("cy", "QUIET", codeType="silent")
    assert again.json()["reasonCode"] == 40752, again.text
    later = await api.redeem("dee", "QUIET", codeType="silent")
    assert later.json()["reasonCode"] == 40403, later.text


async def test_a_response_after_the_deadline_gets_40768_and_changes_nothing(
    api: Api, system: System, store: MongoStore, broker: Broker
) -> None:
    await api.campaign(
        "slowmint",
        handler="simulated-partner",
        timeout=3,
        pollInterval=60,
        **{"async": True},
    )
    late_code = await api.code("slowmint", "LATE", customCodeInfo={"simulate": {"delayS": 3600}})
    ontime_code = await api.code(
        "slowmint", "ONTIME", customCodeInfo={"simulate": {"delayS": 3600}}
    )
    late = (await api.redeem("eve", "LATE", codeType="slowmint", wait=None)).json()
    ontime = (await api.redeem("eve", "ONTIME", codeType="slowmint", wait=None)).json()
    ref = CodeRef("slowmint", "LATE")
    waiting = await eventually(
        lambda: store.get_code(ref),
        until=lambda c: (
            c is not None and c.attempt_state is not None and c.attempt_state.value == "Waiting"
        ),
        what="the first call answered",
    )
    assert waiting is not None

    async def respond(rid: str, key: dict[str, str] = PARTNER_KEY, **body: Any) -> httpx.Response:
        payload = {
            "attempt": 0,
            "redemptionCodeId": late_code["redemptionCodeId"],
            "asyncResponse": {"success": True, "complete": True},
        } | body
        return await api.http.post(
            f"/v1/redemptions/{rid}/async-response", headers=key, json=payload
        )

    assert (await respond(late["redemptionId"], key=api.redeemer)).status_code == 403
    assert (await respond("no-such-redemption")).json()["reasonCode"] == 40762
    assert (await respond(late["redemptionId"], attempt=1)).json()["reasonCode"] == 40760
    bad = await respond(late["redemptionId"], asyncResponse={"complete": "yes"})
    assert (bad.status_code, bad.json()["reasonCode"]) == (422, 40761)

    replies = await Tap.on(broker, None)
    command = {
        "redemptionId": ontime["redemptionId"],
        "attempt": 0,
        "scanCode": "ONTIME",
        "redemptionCodeId": ontime_code["redemptionCodeId"],
        "asyncResponse": {"success": True, "complete": True, "customRedemptionInfo": {"minted": 1}},
    }
    await broker.publish(
        topology.COMMANDS_EXCHANGE,
        topology.ASYNC_RESPONSE_ROUTING_KEY,
        json.dumps(command).encode(),
        reply_to=replies.queue.name,
        correlation_id="c-1",
        headers={topology.AUTHORIZATION_HEADER: PARTNER_KEY["Authorization"]},
    )
    [reply] = await replies.wait_for(1)
    assert json.loads(reply.body)["codeState"] == "Redeemed"

    for worker in [s for s in system.services if s.name == "worker"]:
        worker.kill()  # nobody left to fire the deadline: the response alone meets it
    deadline = waiting.deadline_at
    assert deadline is not None
    await asyncio.sleep(max(0.0, (deadline - from_ms(int(time.time() * 1000))).total_seconds()))
    before = await store.get_code(ref)
    too_late = await respond(late["redemptionId"])
    assert (too_late.status_code, too_late.json()["reasonCode"]) == (409, 40768)
    assert await store.get_code(ref) == before

    system.start("worker")  # after a restart, the deadline fires
    code = await final_code(store, ref)
    assert code.code_state is CodeState.FAILED and code.error_code == "ASYNC_PROCESSING_TIMEOUT"
    record = (await api.redemption(late["redemptionId"])).json()
    assert (record["status"], record["reasonCode"]) == ("Failed", 40751)


async def test_redemptions_waiting_on_partners_survive_a_sigkilled_worker(
    api: Api, system: System, store: MongoStore
) -> None:
    [first] = [s for s in system.services if s.name == "worker"]
    system.start("worker")
    await api.campaign(
        "parcels",
        handler="simulated-partner",
        timeout=20,
        pollInterval=0.5,
        **{"async": True},
    )
    scans = [f"P-{n}" for n in range(20)]
    for scan in scans:
        # Partners slow enough that the killed worker holds calls whatever the machine's pace.
        await api.code("parcels", scan, customCodeInfo={"simulate": {"delayS": 10}})
    accepted = [
        (await api.redeem(f"user-{scan}", scan, codeType="parcels", wait=None)).json()
        for scan in scans
    ]
    await eventually(
        lambda: store.inventory("parcels", shared=False),
        until=lambda counts: counts[CodeState.AVAILABLE] == 0,
        timeout_s=120,  # progress, not pace: a loaded machine's surrogate claims slowly
        what="every code claimed",
    )

    first.kill()

    for scan in scans:
        code = await final_code(store, CodeRef("parcels", scan.replace("-", "")), timeout_s=120)
        assert code.code_state is CodeState.REDEEMED
    for item in accepted:
        record = (await api.redemption(item["redemptionId"])).json()
        assert record["status"] == "Redeemed"
