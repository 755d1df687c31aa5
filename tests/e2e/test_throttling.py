"""Throttling failed redemptions through the running system, on both stores: guesses
beyond the limit are refused (429, 40765) without a code being looked at, over HTTP
and AMQP alike; operators see and lift lockouts."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bench.support.processes import ADMIN_KEY, System
from shared.adapters.rabbitmq import Broker
from tests.conftest import running
from tests.support.amqp import ask
from tests.support.api import Api

LOCKED = 40765
REDEEM = str(Path(sys.executable).parent / "redeem")


@pytest.fixture
def throttled(each_store_env: dict[str, str], tmp_path: Path) -> Iterator[System]:
    """The system, counting 3 failures per user in 15 minutes, on each store."""
    with running({**each_store_env, "REDEEM_FAILURE_LIMITS": "user=3/15m"}, tmp_path) as system:
        yield system


@pytest.fixture
async def api(throttled: System) -> AsyncIterator[Api]:
    intake, _, _ = throttled.start_all("intake", "worker", "results")
    client = Api(intake.url)
    yield client
    await client.close()


async def guess(api: Api, user: str, n: int) -> int:
    answer = await api.redeem(user, f"WRONG-{n}", codeType="gems")
    return answer.status_code


async def test_a_user_out_of_guesses_is_refused_until_an_operator_lifts_it(api: Api) -> None:
    await api.campaign("gems")
    await api.code("gems", "GEMS-1")
    assert [await guess(api, "mallory", n) for n in range(3)] == [404, 404, 404]

    refused = await api.redeem("mallory", "GEMS-1", codeType="gems")

    assert refused.status_code == 429
    assert refused.json()["reasonCode"] == LOCKED
    assert 0 < int(refused.headers["retry-after"]) <= 15 * 60
    assert (await api.lookup("gems", "GEMS-1"))["codeState"] == "Available"
    assert (await api.redeem("alice", "WRONG-0", codeType="gems")).status_code == 404

    listed = (await api.http.get("/v1/lockouts", headers=api.admin)).json()
    assert [(x["scope"], x["failures"]) for x in listed["items"]] == [("user:mallory", 3)]
    lifted = await api.http.delete("/v1/lockouts/user:mallory", headers=api.admin)
    assert lifted.json() == {"scope": "user:mallory", "cleared": True}
    assert (await api.redeem("mallory", "GEMS-1", codeType="gems")).status_code == 200


async def test_a_success_gives_the_user_their_guesses_back(api: Api) -> None:
    await api.campaign("gems")
    await api.code("gems", "GEMS-1")
    assert [await guess(api, "bob", n) for n in range(2)] == [404, 404]
    assert (await api.redeem("bob", "GEMS-1", codeType="gems")).status_code == 200

    assert [await guess(api, "bob", n) for n in range(2, 6)] == [404, 404, 404, 429]


async def test_racing_guesses_reach_codes_no_more_often_than_the_limit(api: Api) -> None:
    await api.campaign("gems")

    answers = await asyncio.gather(
        *(api.redeem("racer", f"WRONG-{n}", codeType="gems") for n in range(12))
    )

    # However the race goes, three guesses are looked at and the rest refused unseen,
    # by the intake or by a worker, and told when to come back either way.
    assert Counter(a.status_code for a in answers) == {404: 3, 429: 9}
    assert all(int(a.headers["retry-after"]) > 0 for a in answers if a.status_code == 429)


async def test_an_amqp_caller_out_of_guesses_is_told_so_in_its_reply(
    api: Api, broker: Broker
) -> None:
    await api.campaign("gems")
    for n in range(3):
        await guess(api, "carol", n)
    command = {"userId": "carol", "scanCode": "GEMS-1", "codeType": "gems"}

    reply, refusal = await ask(broker, command, "c-1")

    assert (reply.correlation_id, refusal["status"], refusal["reasonCode"]) == ("c-1", 429, LOCKED)


async def test_operators_see_and_lift_lockouts_from_the_command_line(
    api: Api, throttled: System
) -> None:
    await api.campaign("gems")
    for n in range(3):
        await guess(api, "dave", n)
    env = {**throttled.env, "REDEEM_URL": str(api.http.base_url), "REDEEM_API_KEY": ADMIN_KEY}
    env["COLUMNS"] = "200"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([REDEEM, *args], env=env, capture_output=True, text=True, timeout=60)

    listed = await asyncio.to_thread(cli, "lockouts", "list")
    assert "user:dave" in listed.stdout and "3 in 900 s" in listed.stdout, listed.stderr
    cleared = await asyncio.to_thread(cli, "lockouts", "clear", "user:dave")
    assert "cleared user:dave" in cleared.stdout, cleared.stderr
    assert "user:dave" not in (await asyncio.to_thread(cli, "lockouts", "list")).stdout


async def test_a_campaign_sets_its_own_limits(api: Api) -> None:
    bad = await api.http.post(
        "/v1/campaigns",
        headers=api.admin,
        json={"codeType": "vip", "failureLimits": "user=lots"},
    )
    assert (bad.status_code, bad.json()["reasonCode"]) == (422, 40660)
    created = await api.campaign("vip", failureLimits="user=1/1h")
    assert created["failureLimits"] == "user=1/1h"

    answers = [(await api.redeem("erin", f"WRONG-{n}", codeType="vip")).status_code for n in (1, 2)]

    assert answers == [404, 429]


async def test_uniform_refusals_answer_every_guess_alike(api: Api) -> None:
    await api.campaign("quiet", uniformRefusals=True)
    await api.code("quiet", "QUIET-1", state="Inactive")
    await api.code("quiet", "QUIET-2")
    assert (await api.redeem("owner", "QUIET-2", codeType="quiet")).status_code == 200

    answers = [
        await api.redeem(f"guesser-{scan}", scan, codeType="quiet")
        for scan in ("QUIET-0", "QUIET-1", "QUIET-2")
    ]

    bodies = {(a.status_code, a.json()["reasonCode"], a.json()["message"]) for a in answers}
    assert bodies == {(404, 40395, "no such code")}
    recent = await api.http.get("/v1/redemptions?codeType=quiet", headers=api.admin)
    real = {r["userId"]: r["reasonCode"] for r in recent.json()["items"]}
    assert real == {
        "owner": None,
        "guesser-QUIET-0": 40395,
        "guesser-QUIET-1": 40398,
        "guesser-QUIET-2": 40403,
    }
