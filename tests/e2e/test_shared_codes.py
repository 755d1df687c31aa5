"""Shared codes end to end: many users, once each, exactly up to maxRedemptions."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from bench.support.processes import System
from tests.support.api import Api

pytestmark = pytest.mark.e2e


async def test_three_hundred_users_race_for_a_hundred_redemptions(api: Api, system: System) -> None:
    system.start("worker")
    await api.campaign("spring", codeUseType="MULTI", scanCode="SPRING-25", maxRedemptions=100)

    answers = await asyncio.gather(
        *(api.redeem(f"user-{n}", "spring 25", codeType="spring", wait=60) for n in range(300))
    )

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {200: 100, 409: 200}, statuses
    assert {a.json()["reasonCode"] for a in answers if a.status_code == 409} == {40778}
    campaign = (await api.http.get("/v1/campaigns/spring", headers=api.admin)).json()
    assert campaign["redemptionCount"] == 100
    winner = next(a.json() for a in answers if a.status_code == 200)
    mine = await api.http.get(
        f"/v1/users/{winner['redeemedByUserId']}/redeemed-codes", headers=api.redeemer
    )
    assert [c["scanCode"] for c in mine.json()["codes"]] == ["SPRING-25"]


async def test_one_user_sending_twice_at_once_gets_one_redemption(api: Api) -> None:
    await api.campaign("twice", codeUseType="MULTI", scanCode="TWICE")
    answers = await asyncio.gather(
        *(api.redeem("zoe", "TWICE", codeType="twice", requestId=f"z-{n}") for n in range(5))
    )
    redeemed = [a for a in answers if a.status_code == 200]
    assert len(redeemed) == 1, [a.text for a in answers]
    assert {a.json()["reasonCode"] for a in answers if a.status_code != 200} <= {40402, 40750}
    assert (await api.redeem("zoe", "TWICE", codeType="twice")).json()["reasonCode"] == 40402
    campaign = (await api.http.get("/v1/campaigns/twice", headers=api.admin)).json()
    assert campaign["redemptionCount"] == 1


async def test_a_shared_code_is_refused_before_and_after_its_window(api: Api) -> None:
    now_ms = int(time.time() * 1000)
    hour = 3_600_000
    await api.campaign(
        "soon",
        codeUseType="MULTI",
        scanCode="SOON",
        validStart=now_ms + hour,
        validEnd=now_ms + 2 * hour,
    )
    await api.campaign(
        "past",
        codeUseType="MULTI",
        scanCode="PAST",
        validStart=now_ms - 2 * hour,
        validEnd=now_ms - hour,
    )
    before = await api.redeem("yan", "SOON")
    after = await api.redeem("yan", "PAST")
    assert (before.status_code, before.json()["reasonCode"]) == (409, 40776)
    assert (after.status_code, after.json()["reasonCode"]) == (409, 40777)


async def test_shared_campaigns_are_checked_when_created(api: Api) -> None:
    async def create(**body: object) -> tuple[int, int]:
        answer = await api.http.post("/v1/campaigns", headers=api.admin, json=body)
        return answer.status_code, answer.json()["reasonCode"]

    assert await create(codeType="a", codeUseType="MULTI") == (422, 40775)
    assert await create(codeType="b", codeUseType="MULTI", scanCode="X" * 21) == (422, 40781)
    await api.campaign("d", codeUseType="MULTI", scanCode="ONLY-ONE")
    assert await create(codeType="e", codeUseType="MULTI", scanCode="only one") == (409, 90410)
    added = await api.http.post(
        "/v1/campaigns/d/codes", headers=api.admin, json={"scanCode": "OTHER"}
    )
    assert (added.status_code, added.json()["reasonCode"]) == (422, 40779)
