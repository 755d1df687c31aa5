"""Personal codes end to end: intake, workers and results as separate processes."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from bench.support.processes import System
from shared import topology
from shared.adapters.mongodb import MongoStore
from shared.adapters.rabbitmq import Broker
from shared.domain.model import CodeRef
from shared.domain.states import CodeState
from tests.support.amqp import Tap
from tests.support.api import Api
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e
REWARD = {"reward": {"item": "gems", "quantity": 100}}


async def relayed(store: MongoStore) -> None:
    """Wait until every stored event has left its outbox."""
    await eventually(
        lambda: store.pending_events(limit=1), until=lambda p: p == [], what="an empty outbox"
    )


async def test_an_http_redemption_ends_redeemed_with_one_redeemed_event(
    api: Api, broker: Broker, store: MongoStore
) -> None:
    events = await Tap.on(broker, topology.EVENTS_EXCHANGE, "code.#")
    await api.campaign("gems", handler="grant-reward")
    await api.code("gems", "GEMS-0001", customCodeInfo=REWARD)

    answer = await api.redeem("alice", "gems 0001", codeType="gems")

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["codeState"] == "Redeemed" and body["redeemedByUserId"] == "alice"
    assert body["customRedemptionInfo"]["granted"] == REWARD["reward"]
    await events.wait_for(2)
    await relayed(store)
    keys = [m.routing_key for m in events.messages]
    assert keys == ["code.inprogress", "code.redeemed"]
    redeemed = events.bodies()[1]
    assert redeemed["redemptionId"] == body["redemptionId"]
    assert redeemed["code"]["codeState"] == "Redeemed" and redeemed["userId"] == "alice"
    assert events.messages[1].message_id == redeemed["eventId"]
    stored = await store.get_code(CodeRef("gems", "GEMS0001"))
    assert stored is not None and stored.code_state is CodeState.REDEEMED
    mine = await api.http.get("/v1/users/alice/redeemed-codes", headers=api.redeemer)
    assert [c["scanCode"] for c in mine.json()["codes"]] == ["GEMS-0001"]
    record = (await api.redemption(body["redemptionId"])).json()
    assert (record["status"], record["code"]["codeState"]) == ("Redeemed", "Redeemed")


async def test_an_amqp_redemption_replies_to_its_caller_and_emits_one_event(
    api: Api, broker: Broker, store: MongoStore
) -> None:
    events = await Tap.on(broker, topology.EVENTS_EXCHANGE, "code.redeemed")
    replies = await Tap.on(broker, None)
    await api.campaign("cards")
    await api.code("cards", "CARD-42")
    command = {"schemaVersion": 1, "userId": "bob", "scanCode": "card-42", "requestId": "b-1"}
    await broker.publish(
        topology.COMMANDS_EXCHANGE,
        topology.REDEEM_ROUTING_KEY,
        json.dumps(command).encode(),
        reply_to=replies.queue.name,
        correlation_id="corr-1",
    )

    [reply] = await replies.wait_for(1)
    assert reply.correlation_id == "corr-1"
    outcome = json.loads(reply.body)
    assert (outcome["status"], outcome["userId"], outcome["requestId"]) == (
        "Redeemed",
        "bob",
        "b-1",
    )
    assert outcome["code"]["codeState"] == "Redeemed"
    await events.wait_for(1)
    await relayed(store)
    assert [b["redemptionId"] for b in events.bodies()] == [outcome["redemptionId"]]


async def test_two_hundred_users_race_for_one_code_through_two_workers(
    api: Api, system: System, store: MongoStore
) -> None:
    system.start("worker")
    await api.campaign("race", handler="grant-reward")
    await api.code("race", "RACE-1", customCodeInfo=REWARD)

    answers = await asyncio.gather(
        *(api.redeem(f"user-{n}", "RACE-1", codeType="race", wait=60) for n in range(200))
    )

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {200: 1, 409: 199}, statuses
    assert {a.json()["reasonCode"] for a in answers if a.status_code == 409} == {40403}
    [winner] = [a.json() for a in answers if a.status_code == 200]
    again = await api.redeem(winner["redeemedByUserId"], "RACE-1", codeType="race")
    assert (again.status_code, again.json()["reasonCode"]) == (409, 40402)
    code = await api.lookup("race", "RACE-1")
    assert code["redeemedByUserId"] == winner["redeemedByUserId"]
    assert [h["action"] for h in code["history"]] == ["redeem", "succeed"]
    workers = [s for s in system.services if s.name == "worker"]
    assert all('"redemption ended"' in w.log() for w in workers), "both workers took part"


async def test_the_same_request_id_redeems_once_and_answers_the_same_redemption(
    api: Api, store: MongoStore
) -> None:
    await api.campaign("dup")
    await api.code("dup", "DUP-1")
    first, second = await asyncio.gather(
        api.redeem("carol", "DUP-1", codeType="dup", requestId="req-7"),
        api.redeem("carol", "DUP-1", codeType="dup", requestId="req-7"),
    )
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.json()["redemptionId"] == second.json()["redemptionId"]
    accepted = await api.redeem("carol", "DUP-1", codeType="dup", requestId="req-7", wait=None)
    assert accepted.status_code == 202
    assert accepted.json()["redemptionId"] == first.json()["redemptionId"]
    code = await api.lookup("dup", "DUP-1")
    assert [h["action"] for h in code["history"]] == ["redeem", "succeed"]


async def test_refusals_answer_with_reference_reason_codes(api: Api, store: MongoStore) -> None:
    await api.campaign("shop")
    await api.campaign("closed", isDisabled=True)
    await api.code("shop", "INACTIVE-1", state="Inactive")
    await api.code("shop", "STOLEN-1")
    await api.code("closed", "CLOSED-1")
    invalidated = await api.http.post(
        "/v1/campaigns/shop/codes/stolen-1/invalidate",
        headers=api.admin,
        json={"invalidationReason": "stolen"},
    )
    assert invalidated.json()["codeState"] == "Invalidated"

    async def refusal(scan: str, code_type: str) -> tuple[int, int]:
        answer = await api.redeem("dave", scan, codeType=code_type)
        return answer.status_code, answer.json()["reasonCode"]

    assert await refusal("INACTIVE-1", "shop") == (409, 40398)
    assert await refusal("STOLEN-1", "shop") == (409, 40400)
    assert await refusal("NOPE-1", "shop") == (404, 40395)
    assert await refusal("INACTIVE-1", "nope") == (404, 40399)
    assert await refusal("CLOSED-1", "closed") == (409, 40753)
    stale = await api.http.patch(
        "/v1/campaigns/shop/codes/INACTIVE-1",
        headers=api.admin,
        json={"version": 7, "customCodeInfo": {"x": 1}},
    )
    assert (stale.status_code, stale.json()["reasonCode"]) == (409, 40396)
    activated = await api.http.post(
        "/v1/campaigns/shop/codes/INACTIVE-1/activate", headers=api.admin
    )
    assert activated.json()["codeState"] == "Available"
    twice = await api.http.post("/v1/campaigns/shop/codes/INACTIVE-1/activate", headers=api.admin)
    assert (twice.status_code, twice.json()["reasonCode"]) == (409, 40397)
    assert (await api.redeem("dave", "inactive-1", codeType="shop")).status_code == 200


async def test_bad_http_input_gets_422_with_a_reason_and_stores_nothing(
    api: Api, store: MongoStore
) -> None:
    await api.campaign("safe")
    await api.code("safe", "SAFE-1")
    headers = {**api.redeemer, "content-type": "application/json"}
    bad_bodies = [
        b'{"userId": "eve", "scanCode": ',
        b'{"userId": 5, "scanCode": ["SAFE-1"]}',
        json.dumps(
            {"userId": "eve", "scanCode": "SAFE-1", "customRedemptionInfo": {"blob": "x" * 70_000}}
        ).encode(),
        json.dumps({"userId": "eve", "scanCode": "SAFE-1", "surprise": True}).encode(),
    ]
    for body in bad_bodies:
        answer = await api.http.post("/v1/redemptions", content=body, headers=headers)
        assert answer.status_code == 422, answer.text
        assert (answer.json()["status"], answer.json()["reasonCode"]) == (422, 40660)
    no_key = await api.http.post("/v1/redemptions", json={"userId": "e", "scanCode": "SAFE-1"})
    assert (no_key.status_code, no_key.json()["reasonCode"]) == (401, 90401)
    wrong_role = await api.http.post(
        "/v1/campaigns", headers=api.redeemer, json={"codeType": "mine"}
    )
    assert (wrong_role.status_code, wrong_role.json()["reasonCode"]) == (403, 90403)
    code = await api.lookup("safe", "SAFE-1")
    assert (code["codeState"], code["version"], code["history"]) == ("Available", 1, [])
    assert await store.pending_events(limit=1) == []


async def test_a_malformed_command_is_dead_lettered_and_the_consumer_keeps_running(
    api: Api, broker: Broker, store: MongoStore
) -> None:
    dead = await Tap.on(broker, topology.DEAD_LETTER_EXCHANGE)
    await api.campaign("amqp")
    await api.code("amqp", "OK-1")
    for body in (b"\x00\xffnot json", b'{"userId": 1}', b'{"userId":"x","scanCode":"$$$"}'):
        await broker.publish(topology.COMMANDS_EXCHANGE, topology.REDEEM_ROUTING_KEY, body)
    good = {"userId": "frank", "scanCode": "OK-1", "codeType": "amqp", "requestId": "f-1"}
    await broker.publish(
        topology.COMMANDS_EXCHANGE, topology.REDEEM_ROUTING_KEY, json.dumps(good).encode()
    )

    messages = await dead.wait_for(3)
    reasons = [str((m.headers or {})[topology.DEAD_LETTER_REASON_HEADER]) for m in messages]
    assert [r.split(" ")[0] for r in reasons] == ["40660", "40660", "40569"], reasons
    code = await eventually(
        lambda: store.get_code(CodeRef("amqp", "OK1")),
        until=lambda c: c is not None and c.code_state is CodeState.REDEEMED,
        what="the good command redeemed",
    )
    assert code is not None and code.redeemed_by_user_id == "frank"
    intake_queue = await broker.consuming.get_queue(topology.INTAKE_QUEUE)
    assert (await intake_queue.declare()).message_count == 0


async def test_a_worker_killed_after_its_claim_leaves_no_code_in_progress(
    api: Api, system: System, store: MongoStore
) -> None:
    backoff = {"initial": 0.5}
    await api.campaign(
        "slow", handler="simulated-partner", timeout=4, maxRetries=1, retryBackoff=backoff
    )
    await api.code("slow", "SLOW-1", customCodeInfo={"simulate": {"delayS": 2}})
    [worker] = [s for s in system.services if s.name == "worker"]
    accepted = await api.redeem("gina", "SLOW-1", codeType="slow", wait=None)
    redemption_id = accepted.json()["redemptionId"]
    await eventually(
        lambda: store.get_code(CodeRef("slow", "SLOW1")),
        until=lambda c: c is not None and c.code_state is CodeState.IN_PROGRESS,
        what="the claim",
    )

    worker.kill()
    system.start("worker")

    final = await eventually(
        lambda: api.redemption(redemption_id),
        until=lambda a: a.json().get("status") == "Redeemed",
        timeout_s=30,
        what="the redemption to end",
    )
    assert final.json()["code"]["redeemedByUserId"] == "gina"
    code = await store.get_code(CodeRef("slow", "SLOW1"))
    assert code is not None and code.code_state is CodeState.REDEEMED
    # The attempt the dead worker was making timed out; a retry on the new worker succeeded.
    assert [h.action.value for h in code.history] == ["redeem", "fail", "retry", "succeed"]


async def test_the_openapi_document_is_published(api: Api) -> None:
    answer = await api.http.get("/openapi.json")
    paths = answer.json()["paths"]
    assert {"/v1/redemptions", "/v1/campaigns", "/v1/redemptions/{redemptionId}"} <= set(paths)
