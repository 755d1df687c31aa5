"""`/s2sdispatcher` on the running system, on both stores, driven by a client that
follows brainCloud's server-to-server protocol (tests/support/s2s.py), in both forms;
and an asynchronous campaign whose attempt a game client starts with the official JS
client and a server ends with PROCESS_ASYNCHRONOUS_RESPONSE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.support.processes import System
from tests.braincloud_client import run_official_client
from tests.conftest import running
from tests.support.api import Api
from tests.support.s2s import S2S
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e
APP, APP_SECRET = "10299", "the-apps-secret"
SERVER, SERVER_SECRET = "game-server", "the-servers-secret"
LIMITED = "limited=other-secret|campaigns=gems"  # a server that reaches gems only
REWARD = {"reward": {"item": "gems", "quantity": 5}}


@pytest.fixture
def front_door(each_store_env: dict[str, str], tmp_path: Path) -> Iterator[System]:
    env = {
        **each_store_env,
        "REDEEM_BRAINCLOUD_APPS": f"{APP}={APP_SECRET}",
        "REDEEM_BRAINCLOUD_SERVERS": f"{SERVER}={SERVER_SECRET};{LIMITED}",
        "REDEEM_BRAINCLOUD_SESSION_EXPIRY_S": "4",
        "REDEEM_BRAINCLOUD_WAIT_S": "2",
    }
    with running(env, tmp_path) as system:
        yield system


@pytest.fixture
async def api(front_door: System) -> AsyncIterator[Api]:
    intake, _, _ = front_door.start_all("intake", "worker", "results")
    client = Api(intake.url)
    yield client
    await client.close()


@pytest.fixture
async def server(api: Api) -> S2S:
    s2s = S2S(api.http, APP, SERVER, SERVER_SECRET)
    entry = await s2s.authenticate()
    assert entry["status"] == 200 and s2s.heartbeat_s == 2
    return s2s


async def profiles(api: Api, count: int) -> list[str]:
    """Profiles of the app, as game clients make them: anonymous, with the official client."""
    scenario = {
        "url": str(api.http.base_url).rstrip("/"),
        "appId": APP,
        "secret": APP_SECRET,
        "clients": [
            {"name": f"p{n}", "steps": [{"op": "authenticateAnonymous"}]} for n in range(count)
        ],
    }
    return [line["result"]["data"]["profileId"] for line in await run_official_client(scenario)]


def ok(entry: dict[str, Any]) -> Any:
    assert entry["status"] == 200, entry
    return entry["data"]["response"]


def refusal(entry: dict[str, Any]) -> int:
    assert entry["status"] != 200, entry
    return int(entry["reason_code"])


async def test_a_server_runs_a_campaign_over_a_session(api: Api, server: S2S) -> None:
    player, other = await profiles(api, 2)
    await api.campaign("gems", handler="grant-reward")
    added = ok(
        await server.redemption(
            "ADD_CODE",
            scanCode="S2S-1",
            codeType="gems",
            codeState="Inactive",
            customCodeInfo=REWARD,
        )
    )
    assert added["codeState"] == "Inactive" and added["version"] == 1
    activated = ok(await server.redemption("ACTIVATE_CODE", scanCode="s2s-1", codeType="gems"))
    assert activated["codeState"] == "Available"
    stale = await server.redemption(
        "UPDATE_CUSTOM_INFO", scanCode="S2S-1", codeType="gems", version=1, customCodeInfo={}
    )
    assert refusal(stale) == 40396
    updated = ok(
        await server.redemption(
            "UPDATE_CUSTOM_INFO",
            scanCode="S2S-1",
            codeType="gems",
            version=activated["version"],
            customCodeInfo={**REWARD, "batch": 7},
        )
    )
    assert updated["customCodeInfo"]["batch"] == 7
    inline = ok(
        await server.redemption(
            "GENERATE_CODES_INLINE",
            codeType="gems",
            quantity=3,
            codeState="Available",
            customCodeInfo=REWARD,
            algorithmName="FiveByFive",
            algorithmDetailsJson='{"includeCheck": true}',
        )
    )
    assert len(inline["generatedScanCodes"]) == 3
    job = ok(
        await server.redemption(
            "GENERATE_CODES", codeType="gems", quantity=5, emailAddress="ops@example.com"
        )
    )
    assert job["quantity"] == 5 and job["jobId"]
    shared = ok(
        await server.redemption(
            "SYS_ADD_MULTI_USE_CODE_TYPE",
            codeType="launch",
            jsonOptions={
                "scanCode": "LAUNCH",
                "maxRedemptions": 2,
                "handler": "grant-reward",
                "customCodeInfo": REWARD,
            },
        )
    )
    assert shared["codeUseType"] == "MULTI" and shared["scanCode"] == "LAUNCH"

    redeemed = ok(
        await server.redemption("REDEEM_CODE", scanCode="S2S-1", codeType="gems", profileId=player)
    )
    assert redeemed["codeState"] == "Redeemed" and redeemed["redeemedByProfileId"] == player
    assert redeemed["gameId"] == APP
    mine = ok(await server.redemption("GET_REDEEMED_CODES", profileId=player))
    assert [c["scanCode"] for c in mine["codes"]] == ["S2S-1"]
    again = await server.redemption(
        "REDEEM_CODE", scanCode="S2S-1", codeType="gems", profileId=other
    )
    assert refusal(again) == 40403
    voided = await server.redemption(
        "INVALIDATE_CODE",
        scanCode=inline["generatedScanCodes"][0],
        codeType="gems",
        invalidationReason="leaked",
    )
    assert ok(voided)["codeState"] == "Invalidated"

    first = ok(
        await server.redemption(
            "SYS_GET_CODE_TYPE_PAGE",
            context={"pagination": {"rowsPerPage": 1, "pageNumber": 1}, "searchCriteria": {}},
        )
    )
    assert first["results"]["count"] == 2 and first["results"]["moreAfter"] is True
    second = ok(
        await server.redemption(
            "SYS_GET_CODE_TYPE_PAGE_OFFSET", context=first["context"], pageOffset=1
        )
    )
    names = {first["results"]["items"][0]["codeType"], second["results"]["items"][0]["codeType"]}
    assert names == {"gems", "launch"}
    assert (await server.heartbeat()) == {"status": 200, "data": None}
    unknown = await server.redemption("NO_SUCH_OPERATION")
    assert refusal(unknown) == 40333


async def test_a_packet_resent_is_answered_alike_and_redeems_once(api: Api, server: S2S) -> None:
    [player] = await profiles(api, 1)
    await api.campaign("gems", handler="grant-reward")
    await api.code("gems", "ONCE-1", customCodeInfo=REWARD)
    entry = await server.redemption(
        "REDEEM_CODE", scanCode="ONCE-1", codeType="gems", profileId=player
    )
    assert ok(entry)["codeState"] == "Redeemed"
    again = await server.resend()
    assert again["messageResponses"] == [entry]
    recent = await api.http.get("/v1/redemptions", headers=api.admin, params={"codeType": "gems"})
    assert [r["status"] for r in recent.json()["items"]] == ["Redeemed"]


async def test_a_server_session_expires_without_packets_and_a_wrong_secret_opens_none(
    api: Api, server: S2S
) -> None:
    await asyncio.sleep(1.5)
    assert (await server.heartbeat())["status"] == 200
    await asyncio.sleep(1.5)  # 3 s since authenticating, 1.5 since the heartbeat: alive
    assert (await server.heartbeat())["status"] == 200
    await asyncio.sleep(5)
    answer = await server.post(
        {
            "packetId": server.packet_id,
            "sessionId": server.session_id,
            "messages": [{"service": "heartbeat", "operation": "HEARTBEAT"}],
        }
    )
    assert answer["reason_code"] == 40365 and refusal(answer["messageResponses"][0]) == 40365
    intruder = S2S(api.http, APP, SERVER, "not-the-secret")
    assert refusal(await intruder.authenticate()) == 40307
    assert intruder.session_id is None


async def test_the_stateless_form_and_a_server_limited_to_campaigns(api: Api) -> None:
    await api.campaign("gems", handler="grant-reward")
    await api.campaign("other", handler="grant-reward")
    stateless = S2S(api.http, APP, SERVER, SERVER_SECRET)
    added = await stateless.stateless(
        "redemptionCode",
        "ADD_CODE",
        {"scanCode": "FREE-1", "codeType": "gems", "codeState": "Available"},
    )
    assert ok(added)["codeState"] == "Available"
    wrong = await stateless.stateless("redemptionCode", "ADD_CODE", {}, secret="nope")
    assert refusal(wrong) == 40307
    limited = S2S(api.http, APP, "limited", "other-secret")
    elsewhere = await limited.stateless(
        "redemptionCode",
        "ADD_CODE",
        {"scanCode": "FREE-2", "codeType": "other", "codeState": "Available"},
    )
    assert refusal(elsewhere) == 90403
    lookup = await api.http.get("/v1/campaigns/other/codes/FREE-2", headers=api.admin)
    assert lookup.status_code == 404


async def test_an_async_redemption_by_a_client_is_ended_by_a_server(api: Api, server: S2S) -> None:
    await api.campaign(
        "parcels", handler="simulated-partner", timeout=60, pollInterval=60, **{"async": True}
    )
    await api.code("parcels", "PARCEL-1", customCodeInfo={"simulate": {"delayS": 3600}})
    scenario = {
        "url": str(api.http.base_url).rstrip("/"),
        "appId": APP,
        "secret": APP_SECRET,
        "clients": [
            {
                "name": "c1",
                "steps": [
                    {"op": "authenticateAnonymous"},
                    {"op": "redeemCode", "scanCode": "PARCEL-1", "codeType": "parcels"},
                ],
            }
        ],
    }
    lines = await run_official_client(scenario)
    auth, started = (line["result"] for line in lines)
    assert started["status"] == 200, started
    code = started["data"]
    assert code["codeState"] == "InProgress"
    profile = auth["data"]["profileId"]
    await eventually(
        lambda: api.lookup("parcels", "PARCEL-1"),
        until=lambda c: c["attemptState"] == "Waiting",
        what="the partner's first answer: not yet",
    )

    unnamed = await server.redemption(
        "PROCESS_ASYNCHRONOUS_RESPONSE",
        scanCode="PARCEL-1",
        codeType="parcels",
        attempt=0,
        asyncResponse={"success": True, "complete": True},
    )
    assert refusal(unnamed) == 40759  # the code's id is required
    done = await server.redemption(
        "PROCESS_ASYNCHRONOUS_RESPONSE",
        scanCode="PARCEL-1",
        codeType="parcels",
        attempt=0,
        redemptionCodeId=code["redemptionCodeId"],
        asyncResponse={"success": True, "complete": True},
    )
    assert ok(done)["codeState"] == "Redeemed"
    mine = ok(await server.redemption("GET_REDEEMED_CODES", profileId=profile))
    assert [c["scanCode"] for c in mine["codes"]] == ["PARCEL-1"]
