"""brainCloud's official JavaScript client (npm `braincloud` 4.15.0), unchanged, against
the running system's `/dispatcherv2`, on both stores: it authenticates, redeems through
the same intake, RabbitMQ and worker path as the HTTP API, gets every refusal's reason,
races, resends, and keeps or loses its session as brainCloud's would."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.support.processes import System
from shared import topology
from shared.adapters.rabbitmq import Broker
from tests.braincloud_client import run_official_client
from tests.conftest import running
from tests.support.amqp import Tap
from tests.support.api import Api

pytestmark = pytest.mark.e2e
APP, SECRET = "10299", "the-apps-secret"
REWARD = {"reward": {"item": "gems", "quantity": 5}}
Line = dict[str, Any]


@pytest.fixture
def front_door(each_store_env: dict[str, str], tmp_path: Path) -> Iterator[System]:
    env = {
        **each_store_env,
        "REDEEM_BRAINCLOUD_APPS": f"{APP}={SECRET}",
        "REDEEM_BRAINCLOUD_SESSION_EXPIRY_S": "4",
    }
    with running(env, tmp_path) as system:
        yield system


@pytest.fixture
async def api(front_door: System) -> AsyncIterator[Api]:
    intake, _, _ = front_door.start_all("intake", "worker", "results")
    client = Api(intake.url)
    yield client
    await client.close()


async def official(api: Api, *clients: dict[str, Any], **options: Any) -> list[Line]:
    """Run the official client's scenario: `clients` are `{"name", "steps"}`."""
    scenario = {
        "url": str(api.http.base_url).rstrip("/"),
        "appId": APP,
        "secret": SECRET,
        "clients": list(clients),
        **options,
    }
    return await run_official_client(scenario)


def results(lines: list[Line], client: str) -> list[Any]:
    return [line["result"] for line in lines if line["client"] == client]


def redeem(scan_code: str, code_type: str = "gems", **data: Any) -> dict[str, Any]:
    return {"op": "redeemCode", "scanCode": scan_code, "codeType": code_type, **data}


def refusal(result: dict[str, Any]) -> tuple[int, int]:
    return result["status"], result["reason_code"]


ANONYMOUS = {"op": "authenticateAnonymous"}


async def test_a_client_redeems_as_its_profile_like_an_http_caller_does(
    api: Api, broker: Broker
) -> None:
    events = await Tap.on(broker, topology.EVENTS_EXCHANGE, "code.#")
    await api.campaign("gems", handler="grant-reward")
    await api.code("gems", "GEMS-HTTP", customCodeInfo=REWARD)
    await api.code("gems", "GEMS-BC-1", customCodeInfo=REWARD)
    over_http = await api.redeem(
        "alice", "GEMS-HTTP", codeType="gems", customRedemptionInfo={"shop": "eu"}
    )
    assert over_http.status_code == 200, over_http.text

    lines = await official(
        api,
        {
            "name": "c1",
            "steps": [
                ANONYMOUS,
                redeem("gems-bc-1", customRedemptionInfo={"shop": "eu"}),
                {"op": "getRedeemedCodes", "codeType": "gems"},
                {"op": "getRedeemedCodes", "codeType": None},
            ],
        },
    )
    auth, redeemed, listed, all_listed = results(lines, "c1")
    profile = auth["data"]["profileId"]
    assert redeemed["status"] == 200, redeemed
    code = redeemed["data"]
    assert code["codeState"] == "Redeemed" and code["scanCode"] == "GEMS-BC-1"
    assert code["redeemedByProfileId"] == profile and code["gameId"] == APP
    assert code["customRedemptionInfo"]["granted"] == REWARD["reward"]
    assert [c["scanCode"] for c in listed["data"]["codes"]] == ["GEMS-BC-1"]
    assert all_listed["data"] == listed["data"]

    # The same record, history and events as the HTTP redemption's, but for who and which.
    await events.wait_for(4)
    by_code = {body["code"]["scanCode"]: body for body in events.bodies()}
    assert sorted(str(m.routing_key) for m in events.messages) == [
        "code.inprogress",
        "code.inprogress",
        "code.redeemed",
        "code.redeemed",
    ]
    assert by_code["GEMS-BC-1"]["userId"] == profile
    assert by_code["GEMS-BC-1"]["redemptionId"] == code["redemptionId"]
    mine, theirs = await api.lookup("gems", "GEMS-BC-1"), await api.lookup("gems", "GEMS-HTTP")
    assert mine["redeemedByUserId"] == profile
    assert _shape(mine, profile) == _shape(theirs, "alice")
    steps = [(e["action"], e["fromState"], e["toState"]) for e in mine["history"]]
    assert steps == [(e["action"], e["fromState"], e["toState"]) for e in theirs["history"]]
    assert [e["by"] for e in mine["history"]][-1] == profile


def _shape(code: dict[str, Any], user: str) -> str:
    """What two redemptions of like codes by two users share: all but the user, names,
    ids and instants."""
    differ = {"scanCode", "redemptionCodeId", "redemptionId", "history"}
    kept = {k: v for k, v in code.items() if k not in differ and not k.endswith("At")}
    return json.dumps(kept, sort_keys=True).replace(json.dumps(user), '"<user>"')


async def test_every_refusal_reaches_the_client_with_its_reason(api: Api) -> None:
    await api.campaign("gems", handler="grant-reward")
    await api.campaign("other", handler="grant-reward")
    await api.code("gems", "MINE-1", customCodeInfo=REWARD)
    await api.code("gems", "THEIRS-1", customCodeInfo=REWARD)
    await api.code("gems", "SLEEPING-1", state="Inactive", customCodeInfo=REWARD)
    await api.code("gems", "VOID-1", customCodeInfo=REWARD)
    voided = await api.http.post(
        "/v1/campaigns/gems/codes/VOID-1/invalidate", headers=api.admin, json={}
    )
    assert voided.status_code == 200, voided.text
    taken = await api.redeem("someone-else", "THEIRS-1", codeType="gems")
    assert taken.status_code == 200, taken.text

    lines = await official(
        api,
        {
            "name": "c1",
            "steps": [
                ANONYMOUS,
                redeem("MINE-1"),
                redeem("MINE-1"),
                redeem("THEIRS-1"),
                redeem("NO-SUCH-CODE"),
                redeem("SLEEPING-1"),
                redeem("VOID-1"),
                redeem("MINE-1", code_type="no-such-campaign"),
                redeem("MINE-1", code_type="other"),
                {"op": "raw", "service": "redemptionCode", "operation": "NOPE", "data": {}},
            ],
        },
    )
    _, first, *refused = results(lines, "c1")
    assert first["status"] == 200
    assert [refusal(r) for r in refused] == [
        (400, 40402),  # redeemed by self
        (400, 40403),  # redeemed by another
        (400, 40395),  # no such code
        (400, 40398),  # not active
        (400, 40400),  # invalidated
        (400, 40399),  # no such campaign
        (400, 40395),  # not in that campaign
        (400, 40333),  # no such operation
    ]


async def test_twenty_clients_racing_for_one_code_one_wins(api: Api, broker: Broker) -> None:
    events = await Tap.on(broker, topology.EVENTS_EXCHANGE, "code.redeemed")
    await api.campaign("gems", handler="grant-reward")
    await api.code("gems", "ONLY-ONE", customCodeInfo=REWARD)
    racers = [
        {"name": f"r{n}", "steps": [ANONYMOUS, {"op": "wait", "barrier": "go"}, redeem("ONLY-ONE")]}
        for n in range(20)
    ]
    lines = await official(api, *racers, concurrent=True)
    outcomes = [line["result"] for line in lines if line["op"] == "redeemCode"]
    won = [o for o in outcomes if o["status"] == 200]
    assert len(outcomes) == 20 and len(won) == 1
    assert {refusal(o) for o in outcomes if o["status"] != 200} <= {(400, 40403), (400, 40750)}
    winner = won[0]["data"]["redeemedByProfileId"]
    code = await api.lookup("gems", "ONLY-ONE")
    assert code["codeState"] == "Redeemed" and code["redeemedByUserId"] == winner
    await events.wait_for(1)
    assert len(events.messages) == 1


async def test_a_packet_sent_twice_redeems_once_and_answers_both_alike(
    api: Api, broker: Broker
) -> None:
    events = await Tap.on(broker, topology.EVENTS_EXCHANGE, "code.#")
    await api.campaign("gems", handler="grant-reward")
    await api.code("gems", "TWICE-1", customCodeInfo=REWARD)
    lines = await official(
        api, {"name": "c1", "steps": [ANONYMOUS, redeem("TWICE-1")]}, duplicateSends=True
    )
    _, redeemed = results(lines, "c1")
    assert redeemed["status"] == 200 and redeemed["data"]["codeState"] == "Redeemed"
    await events.wait_for(2)
    recent = await api.http.get("/v1/redemptions", headers=api.admin, params={"codeType": "gems"})
    assert [r["status"] for r in recent.json()["items"]] == ["Redeemed"]
    assert [m.routing_key for m in events.messages] == ["code.inprogress", "code.redeemed"]


async def test_a_session_kept_by_heartbeats_and_lost_without_and_a_wrong_signature(
    api: Api,
) -> None:
    await api.campaign("gems", handler="grant-reward")
    await api.code("gems", "KEPT-1", customCodeInfo=REWARD)
    await api.code("gems", "LOST-1", customCodeInfo=REWARD)
    lines = await official(
        api,
        {
            "name": "c1",
            "steps": [
                ANONYMOUS,
                {"op": "heartbeat"},
                {"op": "sleep", "ms": 6000},  # past the 4 s expiry: the heartbeats keep it
                redeem("KEPT-1"),
                {"op": "stopHeartBeat"},
                {"op": "sleep", "ms": 6000},
                redeem("LOST-1"),
                redeem("LOST-1"),  # the client dropped the session: it refuses, sending nothing
                ANONYMOUS,
                {"op": "setSecret", "secret": "not-the-apps-secret"},
                redeem("LOST-1"),
            ],
        },
    )
    auth, beat, _, kept, _, _, expired, dropped, again, _, unsigned = results(lines, "c1")
    assert auth["data"]["playerSessionExpiry"] == 4
    assert beat == {"status": 200, "data": None}
    assert kept["status"] == 200
    assert refusal(expired) == (403, 40303)
    assert refusal(dropped) == (403, 40303)  # as the client keeps the session's refusal
    assert again["status"] == 200 and again["data"]["profileId"] == auth["data"]["profileId"]
    assert refusal(unsigned) == (403, 40301)
    assert (await api.lookup("gems", "LOST-1"))["codeState"] == "Available"
