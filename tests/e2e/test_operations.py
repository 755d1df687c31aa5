"""Operator operations over HTTP: inventory, delete, reset, recent attempts."""

from __future__ import annotations

import pytest

from shared import topology
from shared.adapters.rabbitmq import Broker
from tests.support.amqp import Tap
from tests.support.api import Api

pytestmark = pytest.mark.e2e


async def test_inventory_reset_and_delete_a_campaigns_codes(api: Api, broker: Broker) -> None:
    events = await Tap.on(broker, topology.EVENTS_EXCHANGE, "code.#")
    await api.campaign("ops")
    for n in range(4):
        await api.code("ops", f"OPS-{n}", state="Available" if n < 3 else "Inactive")
    assert (await api.redeem("una", "OPS-0", codeType="ops")).status_code == 200
    await api.http.post("/v1/campaigns/ops/codes/OPS-1/invalidate", headers=api.admin)

    inventory = (await api.http.get("/v1/campaigns/ops/inventory", headers=api.admin)).json()
    assert {k: v for k, v in inventory["counts"].items() if v} == {
        "Redeemed": 1,
        "Invalidated": 1,
        "Available": 1,
        "Inactive": 1,
    }
    assert inventory["total"] == 4

    reset = await api.http.post(
        "/v1/campaigns/ops/codes/reset", headers=api.admin, json={"codeState": "Available"}
    )
    assert reset.json() == {"reset": 4}
    code = await api.lookup("ops", "OPS-0")
    assert (code["codeState"], code["redeemedByUserId"]) == ("Available", None)
    assert [h["action"] for h in code["history"]] == ["redeem", "succeed", "reset"]
    messages = await events.wait_for(3 + 4)
    assert sum(1 for m in messages if m.routing_key == "code.activated") == 4
    again = await api.redeem("vic", "OPS-0", codeType="ops")
    assert again.status_code == 200, "a reset code is redeemable again"

    bad = await api.http.post(
        "/v1/campaigns/ops/codes/reset", headers=api.admin, json={"codeState": "Redeemed"}
    )
    assert (bad.status_code, bad.json()["reasonCode"]) == (422, 40660)
    deleted = await api.http.delete("/v1/campaigns/ops/codes", headers=api.admin)
    assert deleted.json() == {"deleted": 4}
    inventory = (await api.http.get("/v1/campaigns/ops/inventory", headers=api.admin)).json()
    assert inventory["total"] == 0
    missing = await api.http.get("/v1/campaigns/nope/inventory", headers=api.admin)
    assert (missing.status_code, missing.json()["reasonCode"]) == (404, 40399)


async def test_recent_attempts_page_newest_first(api: Api) -> None:
    await api.campaign("recent")
    await api.code("recent", "R-1")
    for n in range(5):
        await api.redeem(f"user-{n}", "R-1", codeType="recent")
    first = (
        await api.http.get(
            "/v1/redemptions", headers=api.admin, params={"codeType": "recent", "limit": 3}
        )
    ).json()
    assert [r["userId"] for r in first["items"]] == ["user-4", "user-3", "user-2"]
    rest = (
        await api.http.get(
            "/v1/redemptions",
            headers=api.admin,
            params={"codeType": "recent", "limit": 3, "before": first["before"]},
        )
    ).json()
    assert [r["userId"] for r in rest["items"]] == ["user-1", "user-0"]
    assert rest["before"] is None
    assert [r["status"] for r in rest["items"]] == ["Rejected", "Redeemed"]
