"""Numbers a caller sends are bounded: pages, offsets and instants out of range are refused
with 40660, never answered with a 500; on every store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from services.intake.paging import MAX_PAGE
from shared.adapters.sqlite import SqliteStore
from shared.ports import Store
from shared.runtime.settings import Settings
from tests.fakes import FakeStore
from tests.unit.intake_harness import RecordingBroker, intake_client

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ADMIN = {"Authorization": "Bearer admin-key"}
SETTINGS = Settings(api_keys="admin-key=admin", context_secret="secret")
LAST_MS = 253_402_300_799_999  # the end of year 9999
INVALID = (422, 40660)


@pytest.fixture(params=["fake", "sqlite"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store: Store = FakeStore() if request.param == "fake" else SqliteStore(tmp_path / "s.db")
    await store.prepare()
    async with intake_client(store, RecordingBroker(), SETTINGS, lambda: NOW) as (client, _):
        yield client
    await store.close()


def refusal(answer: httpx.Response) -> tuple[int, int]:
    return answer.status_code, answer.json()["reasonCode"]


@pytest.mark.parametrize("page", [0, MAX_PAGE + 1, 10**18, 10**30])
async def test_a_page_number_out_of_range_is_refused(api: httpx.AsyncClient, page: int) -> None:
    answer = await api.get("/v1/campaigns", params={"pageNumber": page}, headers=ADMIN)
    assert refusal(answer) == INVALID


async def test_the_last_page_may_be_asked_for(api: httpx.AsyncClient) -> None:
    answer = await api.get("/v1/campaigns", params={"pageNumber": MAX_PAGE}, headers=ADMIN)
    assert answer.status_code == 200 and answer.json()["results"]["items"] == []


@pytest.mark.parametrize(
    ("start", "offset"),
    [(1, MAX_PAGE), (1, 10**30), (1, -(10**30)), (MAX_PAGE, 1)],
)
async def test_a_page_offset_out_of_range_is_refused(
    api: httpx.AsyncClient, start: int, offset: int
) -> None:
    first = await api.get("/v1/campaigns", params={"pageNumber": start}, headers=ADMIN)
    context = first.json()["context"]
    answer = await api.get(
        f"/v1/campaigns/pages/{context}", params={"pageOffset": offset}, headers=ADMIN
    )
    assert refusal(answer) == INVALID


async def test_an_offset_before_the_first_page_still_gives_the_first(
    api: httpx.AsyncClient,
) -> None:
    first = await api.get("/v1/campaigns", params={"pageNumber": 3}, headers=ADMIN)
    context = first.json()["context"]
    answer = await api.get(
        f"/v1/campaigns/pages/{context}", params={"pageOffset": -5}, headers=ADMIN
    )
    assert answer.status_code == 200 and answer.json()["results"]["page"] == 1


@pytest.mark.parametrize("before", [-1, LAST_MS + 1, 10**17, -(10**17), 10**30])
async def test_an_instant_out_of_range_in_a_query_is_refused(
    api: httpx.AsyncClient, before: int
) -> None:
    answer = await api.get("/v1/redemptions", params={"before": before}, headers=ADMIN)
    assert refusal(answer) == INVALID
    assert "epoch milliseconds" in answer.json()["message"]


@pytest.mark.parametrize("before", ["soon", "12.", ".r1", "1e3"])
async def test_a_page_start_that_is_no_instant_nor_a_page_end_is_refused(
    api: httpx.AsyncClient, before: str
) -> None:
    answer = await api.get("/v1/redemptions", params={"before": before}, headers=ADMIN)
    assert refusal(answer) == INVALID
    assert repr(before) in answer.json()["message"]


@pytest.mark.parametrize("before", [0, LAST_MS])
async def test_the_first_and_last_instants_are_taken(api: httpx.AsyncClient, before: int) -> None:
    answer = await api.get("/v1/redemptions", params={"before": before}, headers=ADMIN)
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("field", ["validStart", "validEnd"])
@pytest.mark.parametrize("ms", [-1, LAST_MS + 1, 10**30])
async def test_an_instant_out_of_range_in_a_campaign_is_refused(
    api: httpx.AsyncClient, field: str, ms: int
) -> None:
    created = await api.post("/v1/campaigns", json={"codeType": "c", field: ms}, headers=ADMIN)
    assert refusal(created) == INVALID
    await api.post("/v1/campaigns", json={"codeType": "gems"}, headers=ADMIN)
    changed = await api.patch("/v1/campaigns/gems", json={"version": 1, field: ms}, headers=ADMIN)
    assert refusal(changed) == INVALID
