"""Campaign listing (`SysGetCodeTypePage`, `SysGetCodeTypePageOffset`) and edits."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.api import Api

pytestmark = pytest.mark.e2e


async def test_125_campaigns_page_50_at_a_time_and_move_by_offsets(api: Api) -> None:
    names = [f"camp-{n:03d}" for n in range(125)]
    await asyncio.gather(*(api.campaign(name) for name in names))

    first = (
        await api.http.get("/v1/campaigns", headers=api.admin, params={"rowsPerPage": 50})
    ).json()
    pages = [first["results"]]
    context = first["context"]
    for _ in range(2):
        moved = (
            await api.http.get(
                f"/v1/campaigns/pages/{context}", headers=api.admin, params={"pageOffset": 1}
            )
        ).json()
        pages.append(moved["results"])
        context = moved["context"]

    assert [p["page"] for p in pages] == [1, 2, 3]
    assert [len(p["items"]) for p in pages] == [50, 50, 25]
    assert all(p["count"] == 125 for p in pages)
    assert [(p["moreBefore"], p["moreAfter"]) for p in pages] == [
        (False, True),
        (True, True),
        (True, False),
    ]
    assert [c["codeType"] for p in pages for c in p["items"]] == names
    back = (
        await api.http.get(
            f"/v1/campaigns/pages/{context}", headers=api.admin, params={"pageOffset": -1}
        )
    ).json()["results"]
    assert back["page"] == 2 and back["items"] == pages[1]["items"]


async def test_a_tampered_context_is_refused(api: Api) -> None:
    await api.campaign("only")
    context = (await api.http.get("/v1/campaigns", headers=api.admin)).json()["context"]
    payload, _, signature = context.rpartition(".")
    forged = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1] + "." + signature
    for bad in (forged, context + "x", "not-a-context"):
        answer = await api.http.get(f"/v1/campaigns/pages/{bad}", headers=api.admin)
        assert (answer.status_code, answer.json()["reasonCode"]) == (422, 40660), bad


async def test_listing_filters_by_use_type_validity_and_state(api: Api) -> None:
    hour = 3_600_000
    now = int(time.time() * 1000)
    await api.campaign("p-open")
    await api.campaign("p-off", isDisabled=True)
    await api.campaign("s-open", codeUseType="MULTI", scanCode="S-OPEN")
    await api.campaign("s-later", codeUseType="MULTI", scanCode="S-LATER", validStart=now + hour)

    async def listed(**params: str | bool) -> list[str]:
        answer = await api.http.get("/v1/campaigns", headers=api.admin, params=params)
        return [c["codeType"] for c in answer.json()["results"]["items"]]

    assert await listed(codeUseType="MULTI") == ["s-later", "s-open"]
    assert await listed(isDisabled=True) == ["p-off"]
    assert await listed(validNow=True) == ["p-off", "p-open", "s-open"]
    assert await listed(validNow=True, isDisabled=False, codeUseType="SINGLE") == ["p-open"]


async def test_a_campaign_edit_needs_the_current_version(api: Api) -> None:
    created = await api.campaign("edit-me", codeUseType="MULTI", scanCode="EDIT", maxRedemptions=5)
    changed = await api.http.patch(
        "/v1/campaigns/edit-me",
        headers=api.admin,
        json={"version": created["version"], "isDisabled": True, "maxRedemptions": 7},
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["isDisabled"], body["maxRedemptions"], body["version"]) == (True, 7, 2)
    stale = await api.http.patch(
        "/v1/campaigns/edit-me", headers=api.admin, json={"version": 1, "isDisabled": False}
    )
    assert (stale.status_code, stale.json()["reasonCode"]) == (409, 40396)
    refused = await api.redeem("ola", "EDIT", codeType="edit-me")
    assert (refused.status_code, refused.json()["reasonCode"]) == (409, 40753)
    reopened = await api.http.patch(
        "/v1/campaigns/edit-me", headers=api.admin, json={"version": 2, "isDisabled": False}
    )
    assert reopened.json()["version"] == 3
