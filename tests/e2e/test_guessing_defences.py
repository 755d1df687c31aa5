"""Guessing without naming a campaign, through the running system on both stores: a
campaign's uniform refusals and failure limits hold for a redemption that names no
`codeType` as for one that names it; and a code whose fulfillment failed is someone
else's to every user but the one who claimed it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.support.processes import System
from tests.conftest import running
from tests.support.api import Api

LOCKED = 40765
NOT_FOUND, NOT_ACTIVE, BY_OTHER = 40395, 40398, 40403
FAILED_NO_RETRIES = 40752


@pytest.fixture
def guarded(each_store_env: dict[str, str], tmp_path: Path) -> Iterator[System]:
    """The system with the default limits (10 failures per user in 15 minutes) and
    uniform refusals off, on each store."""
    with running(each_store_env, tmp_path) as system:
        yield system


@pytest.fixture
async def api(guarded: System) -> AsyncIterator[Api]:
    intake, _, _ = guarded.start_all("intake", "worker", "results")
    client = Api(intake.url)
    yield client
    await client.close()


def reason(answer: Any) -> int:
    return int(answer.json()["reasonCode"])


async def real_reasons(api: Api) -> dict[str, int | None]:
    """The reason of every recent redemption, by user, as operators see it."""
    recent = await api.http.get("/v1/redemptions", headers=api.admin, params={"limit": 100})
    return {r["userId"]: r["reasonCode"] for r in recent.json()["items"]}


async def lockouts(api: Api) -> dict[str, int]:
    listed = await api.http.get("/v1/lockouts", headers=api.admin)
    return {x["scope"]: x["failures"] for x in listed.json()["items"]}


async def until_locked_out(api: Api, scope: str, timeout_s: float = 10) -> int:
    """The failures of `scope` once it is locked out; fails after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while (failures := (await lockouts(api)).get(scope)) is None:
        assert time.monotonic() < deadline, f"{scope} not locked out: {await lockouts(api)}"
        await asyncio.sleep(0.05)
    return failures


async def test_naming_no_campaign_does_not_escape_its_uniform_refusals(api: Api) -> None:
    await api.campaign("quiet", uniformRefusals=True)
    await api.code("quiet", "QUIET-1", state="Inactive")
    await api.code("quiet", "QUIET-2")
    assert (await api.redeem("owner", "QUIET-2", codeType="quiet")).status_code == 200

    answers = [
        await api.redeem(f"guesser-{scan}", scan) for scan in ("QUIET-0", "QUIET-1", "QUIET-2")
    ]

    bodies = {(a.status_code, reason(a), a.json()["message"]) for a in answers}
    assert bodies == {(404, NOT_FOUND, "no such code")}
    real = await real_reasons(api)
    assert (real["guesser-QUIET-0"], real["guesser-QUIET-1"], real["guesser-QUIET-2"]) == (
        NOT_FOUND,
        NOT_ACTIVE,
        BY_OTHER,
    )


async def test_naming_no_campaign_does_not_escape_a_campaigns_failure_limits(api: Api) -> None:
    await api.campaign("gems")
    await api.campaign("vip", failureLimits="user=1/1h")

    answers = [await api.redeem("erin", f"WRONG-{n}") for n in (1, 2)]

    assert [a.status_code for a in answers] == [404, 429]
    assert reason(answers[1]) == LOCKED
    assert (await lockouts(api)).get("user:erin") == 1


async def test_a_guess_naming_no_campaign_counts_in_the_campaign_its_code_is_in(
    api: Api,
) -> None:
    await api.campaign("vip", failureLimits="campaign=2/1h")
    for n in (1, 2, 3):
        await api.code("vip", f"VIP-{n}", state="Inactive")

    guesses = [await api.redeem(f"guesser-{n}", f"VIP-{n}") for n in (1, 2)]

    assert [reason(a) for a in guesses] == [NOT_ACTIVE, NOT_ACTIVE]
    assert await until_locked_out(api, "campaign:vip") == 2
    named = await api.redeem("someone", "VIP-3", codeType="vip")
    assert (named.status_code, reason(named)) == (429, LOCKED)


async def test_a_code_whose_fulfillment_failed_is_someone_elses_to_other_users(
    api: Api,
) -> None:
    await api.campaign("flaky", handler="grant-reward")  # no reward to grant: it fails
    await api.code("flaky", "FLAKY-1")
    owned = await api.redeem("owner", "FLAKY-1", codeType="flaky")
    assert (await api.lookup("flaky", "FLAKY-1"))["codeState"] == "Failed", owned.text

    by_name = await api.redeem("mallory", "FLAKY-1", codeType="flaky")
    by_code = await api.redeem("mallory", "FLAKY-1")
    owner_again = await api.redeem("owner", "FLAKY-1", codeType="flaky")

    assert reason(by_name) == BY_OTHER
    assert reason(by_code) == BY_OTHER
    assert reason(owner_again) == FAILED_NO_RETRIES
