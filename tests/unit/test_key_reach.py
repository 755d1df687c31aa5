"""Keys limited to campaigns, at the intake with fakes: refused before a body is read,
and lists that show only what the key reaches, paged as the key sees them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from services.intake.bootstrap import Intake
from shared.domain.model import Redemption
from shared.domain.reasons import ReasonCode
from shared.domain.throttling import Caller
from shared.runtime.settings import Settings
from tests.fakes import FakeStore
from tests.unit.intake_harness import RecordingBroker, intake_client
from tests.unit.test_intake_admission import BODY_ROUTES, PATH_PARAMS, Upload

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SETTINGS = Settings(
    api_keys="admin-key=admin;gems-admin=admin|campaigns=gems,zeta",
    context_secret="secret",
    failure_limits="user=1/1h,campaign=1/1h",
)
ADMIN = {"Authorization": "Bearer admin-key"}
LIMITED = {"Authorization": "Bearer gems-admin"}
# Every route with a body that names a campaign in its path, naming one out of reach.
IN_ANOTHER = [
    (method, path.format(**PATH_PARAMS | {"codeType": "other"}))
    for method, path, _ in BODY_ROUTES
    if "{codeType}" in path
]


@pytest.fixture
async def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
async def running(store: FakeStore) -> AsyncIterator[tuple[httpx.AsyncClient, Intake]]:
    async with intake_client(store, RecordingBroker(), SETTINGS, lambda: NOW) as (client, intake):
        for name in ("alpha", "gems", "other", "zeta"):
            created = await client.post("/v1/campaigns", headers=ADMIN, json={"codeType": name})
            assert created.status_code == 201
        yield client, intake


@pytest.fixture
def api(running: tuple[httpx.AsyncClient, Intake]) -> httpx.AsyncClient:
    return running[0]


@pytest.mark.parametrize(("method", "path"), IN_ANOTHER)
async def test_a_key_naming_a_campaign_out_of_reach_is_refused_before_its_body_is_read(
    api: httpx.AsyncClient, method: str, path: str
) -> None:
    upload = Upload(4 * 1024 * 1024)
    headers = LIMITED | {"content-type": "application/json"}
    answer = await api.request(method, path, content=upload.chunks(), headers=headers)
    assert (answer.status_code, answer.json()["reasonCode"]) == (403, ReasonCode.FORBIDDEN)
    assert upload.read == 0


async def test_a_limited_admin_pages_through_its_campaigns_only(api: httpx.AsyncClient) -> None:
    async def page(**params: str | int) -> tuple[list[str], int]:
        answer = (await api.get("/v1/campaigns", headers=LIMITED, params=params)).json()
        return [c["codeType"] for c in answer["results"]["items"]], answer["results"]["count"]

    assert await page(rowsPerPage=1) == (["gems"], 2)
    assert await page(rowsPerPage=1, pageNumber=2) == (["zeta"], 2)
    assert await page(rowsPerPage=1, pageNumber=3) == ([], 2)
    zeta = (await api.get("/v1/campaigns/zeta", headers=LIMITED)).json()
    patched = await api.patch(
        "/v1/campaigns/zeta", headers=LIMITED, json={"version": zeta["version"], "isDisabled": True}
    )
    assert patched.status_code == 200
    assert await page(isDisabled="false") == (["gems"], 1)
    created = await api.post("/v1/campaigns", headers=LIMITED, json={"codeType": "beta"})
    assert created.json()["reasonCode"] == ReasonCode.FORBIDDEN


async def test_a_limited_admin_sees_its_campaigns_recent_redemptions_newest_first(
    api: httpx.AsyncClient, store: FakeStore
) -> None:
    for n, code_type in enumerate(["gems", "other", "zeta", "gems", "other"]):
        at = NOW + timedelta(seconds=n)
        await store.open_redemption(Redemption(f"r{n}", f"q{n}", "u1", "X", at, at, code_type))

    async def recent(headers: dict[str, str], **params: str | int) -> list[str]:
        answer = await api.get("/v1/redemptions", headers=headers, params=params)
        return [r["redemptionId"] for r in answer.json()["items"]]

    assert await recent(LIMITED, limit=2) == ["r3", "r2"]
    before_r2 = int((NOW + timedelta(seconds=2)).timestamp() * 1000)
    assert await recent(LIMITED, limit=2, before=before_r2) == ["r0"]
    assert await recent(ADMIN) == ["r4", "r3", "r2", "r1", "r0"]
    other = await api.get("/v1/redemptions/r1", headers=LIMITED)
    assert other.json()["reasonCode"] == ReasonCode.FORBIDDEN


async def test_pages_of_a_limited_admin_go_on_where_the_last_ended_in_one_millisecond(
    api: httpx.AsyncClient, store: FakeStore
) -> None:
    for n, code_type in enumerate(["gems", "other", "zeta", "gems", "other", "gems", "zeta"]):
        await store.open_redemption(Redemption(f"r{n}", f"q{n}", "u1", "X", NOW, NOW, code_type))
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 2}
    while True:
        page = (await api.get("/v1/redemptions", headers=LIMITED, params=params)).json()
        seen += [r["redemptionId"] for r in page["items"]]
        if page["before"] is None:
            break
        params["before"] = page["before"]
    assert seen == ["r6", "r5", "r3", "r2", "r0"]


async def test_a_limited_admin_sees_and_lifts_only_its_campaigns_lockouts(
    running: tuple[httpx.AsyncClient, Intake],
) -> None:
    api, intake = running
    await intake.budget.reserve("a1", Caller("u1", None, None, "gems"))
    await intake.budget.reserve("a2", Caller("u2", None, None, "other"))

    async def scopes(headers: dict[str, str]) -> list[str]:
        return [
            x["scope"] for x in (await api.get("/v1/lockouts", headers=headers)).json()["items"]
        ]

    assert await scopes(ADMIN) == ["campaign:gems", "campaign:other", "user:u1", "user:u2"]
    assert await scopes(LIMITED) == ["campaign:gems"]
    refused = await api.delete("/v1/lockouts/user:u1", headers=LIMITED)
    assert refused.json()["reasonCode"] == ReasonCode.FORBIDDEN
    lifted = await api.delete("/v1/lockouts/campaign:gems", headers=LIMITED)
    assert lifted.json() == {"scope": "campaign:gems", "cleared": True}
    assert await scopes(LIMITED) == []
