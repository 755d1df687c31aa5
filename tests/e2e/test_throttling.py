"""Throttling failed redemptions through the running system, on both stores: guesses
beyond the limit of a user, an API key, a client address or a campaign are refused (429,
40765) without a code being looked at, over HTTP and AMQP alike, by every intake from
one budget; operators see and lift lockouts. Uniform refusals tell a guesser nothing,
and operators the real reason."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.support.processes import ADMIN_KEY, API_KEYS, REDEEM_KEY, System
from services.intake.auth import key_id
from shared.adapters.rabbitmq import Broker
from tests.conftest import running
from tests.support.amqp import ask
from tests.support.api import Api

pytestmark = pytest.mark.e2e
LOCKED = 40765
REDEEM = str(Path(sys.executable).parent / "redeem")
OTHER_SHOP_KEY = "test-redeem-key-of-another-shop"


def limits(spec: str) -> pytest.MarkDecorator:
    """A test's system counting failures as `spec` says (REDEEM_FAILURE_LIMITS)."""
    return pytest.mark.parametrize("settings", [{"REDEEM_FAILURE_LIMITS": spec}], ids=[spec])


@pytest.fixture
def settings() -> dict[str, str]:
    """What the system runs with beyond its store's: 3 failures per user in 15 minutes."""
    return {"REDEEM_FAILURE_LIMITS": "user=3/15m"}


@pytest.fixture
def throttled(
    each_store_env: dict[str, str], settings: dict[str, str], tmp_path: Path
) -> Iterator[System]:
    """The system, counting failures as `settings` say, on each store; two shops' keys."""
    keys = f"{API_KEYS};{OTHER_SHOP_KEY}=redeem"
    with running({**each_store_env, "REDEEM_API_KEYS": keys, **settings}, tmp_path) as system:
        yield system


@pytest.fixture
async def api(throttled: System) -> AsyncIterator[Api]:
    intake, _, _ = throttled.start_all("intake", "worker", "results")
    client = Api(intake.url)
    yield client
    await client.close()


def locked_out(answer: httpx.Response) -> bool:
    """Refused for want of guesses, and told when to come back (within the window)."""
    retry_after = int(answer.headers.get("retry-after", "0"))
    return (
        answer.status_code == 429
        and answer.json()["reasonCode"] == LOCKED
        and 0 < retry_after <= 15 * 60
    )


async def redeem_as(
    http: httpx.AsyncClient,
    user: str,
    scan: str,
    *,
    key: str = REDEEM_KEY,
    code_type: str = "gems",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await http.post(
        "/v1/redemptions",
        params={"wait": 20},
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
        json={"userId": user, "scanCode": scan, "codeType": code_type},
    )


async def lockouts(api: Api) -> list[tuple[str, int]]:
    listed = (await api.http.get("/v1/lockouts", headers=api.admin)).json()
    return [(x["scope"], x["failures"]) for x in listed["items"]]


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


@limits("user=off,key=3/15m")
async def test_a_key_out_of_guesses_is_refused_whichever_user_it_names(api: Api) -> None:
    await api.campaign("gems")
    await api.code("gems", "GEMS-1")
    guesses = [await redeem_as(api.http, f"shopper-{n}", f"WRONG-{n}") for n in range(3)]
    assert [g.status_code for g in guesses] == [404, 404, 404]

    refused = await redeem_as(api.http, "shopper-new", "GEMS-1")

    assert locked_out(refused), refused.text
    assert (await api.lookup("gems", "GEMS-1"))["codeState"] == "Available"
    other_shop = await redeem_as(api.http, "shopper-new", "GEMS-1", key=OTHER_SHOP_KEY)
    assert other_shop.status_code == 200, other_shop.text
    assert await lockouts(api) == [(f"key:{key_id(REDEEM_KEY)}", 3)]


@limits("user=off,address=3/15m")
async def test_an_address_out_of_guesses_is_refused_whatever_it_forwards(api: Api) -> None:
    await api.campaign("gems")
    await api.code("gems", "GEMS-1")
    intake = str(api.http.base_url)

    def client_at(address: str) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(local_address=address)
        return httpx.AsyncClient(base_url=intake, transport=transport, timeout=60)

    async with client_at("127.0.0.2") as guesser, client_at("127.0.0.3") as neighbour:
        # A new user and a new X-Forwarded-For each time: the intake trusts no proxy
        # (REDEEM_FORWARDED_ALLOW_IPS unset), so the connection's address is counted.
        guesses = [
            await redeem_as(
                guesser, f"user-{n}", f"WRONG-{n}", headers={"X-Forwarded-For": f"203.0.113.{n}"}
            )
            for n in range(3)
        ]
        assert [g.status_code for g in guesses] == [404, 404, 404]

        refused = await redeem_as(
            guesser, "user-new", "GEMS-1", headers={"X-Forwarded-For": "203.0.113.99"}
        )

        assert locked_out(refused), refused.text
        assert (await api.lookup("gems", "GEMS-1"))["codeState"] == "Available"
        next_door = await redeem_as(neighbour, "user-new", "GEMS-1")
        assert next_door.status_code == 200, next_door.text
    assert await lockouts(api) == [("address:127.0.0.2", 3)]


@limits("user=off,campaign=3/15m")
async def test_a_campaign_out_of_guesses_is_refused_to_everyone_other_campaigns_go_on(
    api: Api,
) -> None:
    await api.campaign("gems")
    await api.campaign("coins")
    await api.code("gems", "GEMS-1")
    await api.code("coins", "COINS-1")
    guesses = [await redeem_as(api.http, f"user-{n}", f"WRONG-{n}") for n in range(3)]
    assert [g.status_code for g in guesses] == [404, 404, 404]

    refused = await redeem_as(api.http, "honest", "GEMS-1")

    assert locked_out(refused), refused.text
    assert (await api.lookup("gems", "GEMS-1"))["codeState"] == "Available"
    missed = await redeem_as(api.http, "honest", "WRONG-C", code_type="coins")
    assert missed.status_code == 404, missed.text
    coins = await redeem_as(api.http, "honest", "COINS-1", code_type="coins")
    assert coins.status_code == 200, coins.text
    assert await lockouts(api) == [("campaign:gems", 3)]
    lifted = await api.http.delete("/v1/lockouts/campaign:gems", headers=api.admin)
    assert lifted.json() == {"scope": "campaign:gems", "cleared": True}
    assert (await redeem_as(api.http, "honest", "GEMS-1")).status_code == 200


async def test_every_intake_counts_failures_against_one_budget(throttled: System) -> None:
    first, second, worker, _ = throttled.start_all("intake", "intake", "worker", "results")
    at_first, at_second = Api(first.url), Api(second.url)
    try:
        await at_first.campaign("gems")
        await at_first.code("gems", "GEMS-1")
        for n in range(3):
            assert (await guess(at_first, "mallory", n)) == 404
            assert (await guess(at_second, "trudy", n)) == 404

        # No worker left to refuse anything: what refuses now is each intake's own check,
        # of the failures the other intake let through.
        worker.kill()
        mallory = await at_second.redeem("mallory", "GEMS-1", codeType="gems")
        trudy = await at_first.redeem("trudy", "GEMS-1", codeType="gems")

        assert locked_out(mallory), mallory.text
        assert locked_out(trudy), trudy.text
        for intake in (at_first, at_second):
            accepted = await intake.redeem("alice", "GEMS-1", codeType="gems", wait=None)
            assert accepted.status_code == 202, accepted.text
    finally:
        await at_first.close()
        await at_second.close()


QUIETLY = [
    ({"REDEEM_FAILURE_LIMITS": "user=3/15m"}, {"uniformRefusals": True}),
    ({"REDEEM_FAILURE_LIMITS": "user=3/15m", "REDEEM_UNIFORM_REFUSALS": "true"}, {}),
]


@pytest.mark.parametrize(("settings", "quiet"), QUIETLY, ids=["campaign", "global-default"])
async def test_uniform_refusals_answer_every_guess_alike(api: Api, quiet: dict[str, Any]) -> None:
    created = await api.campaign("quiet", **quiet)
    assert created["uniformRefusals"] is quiet.get("uniformRefusals")
    await api.code("quiet", "QUIET-1", state="Inactive")
    await api.code("quiet", "QUIET-2")
    await api.code("quiet", "QUIET-3")
    invalidated = await api.http.post(
        "/v1/campaigns/quiet/codes/QUIET-3/invalidate",
        headers=api.admin,
        json={"invalidationReason": "leaked"},
    )
    assert invalidated.json()["codeState"] == "Invalidated", invalidated.text
    assert (await api.redeem("owner", "QUIET-2", codeType="quiet")).status_code == 200

    answers = [
        await api.redeem(f"guesser-{scan}", scan, codeType="quiet")
        for scan in ("QUIET-0", "QUIET-1", "QUIET-2", "QUIET-3")
    ]

    bodies = {(a.status_code, a.json()["reasonCode"], a.json()["message"]) for a in answers}
    assert bodies == {(404, 40395, "no such code")}
    for answer in answers:  # and so does a guesser's look at its own redemption
        told = (await api.redemption(answer.headers["x-redemption-id"])).json()
        assert told["reasonCode"] == 40395, told
    recent = await api.http.get("/v1/redemptions?codeType=quiet", headers=api.admin)
    real = {r["userId"]: r["reasonCode"] for r in recent.json()["items"]}
    assert real == {
        "owner": None,
        "guesser-QUIET-0": 40395,
        "guesser-QUIET-1": 40398,
        "guesser-QUIET-2": 40403,
        "guesser-QUIET-3": 40400,
    }
