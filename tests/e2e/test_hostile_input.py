"""Hostile input to the running system, on both stores, gets a clear 4xx and changes
nothing."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bench.support.processes import System
from shared.adapters.rabbitmq import Broker
from tests.conftest import running
from tests.support.amqp import ask
from tests.support.api import Api

pytestmark = pytest.mark.e2e
INVALID = (422, 40660)


@pytest.fixture
def any_store_system(each_store_env: dict[str, str], tmp_path: Path) -> Iterator[System]:
    """The system on MongoDB, then on the embedded store."""
    with running(each_store_env, tmp_path) as started:
        yield started


@pytest.fixture
async def api(any_store_system: System) -> AsyncIterator[Api]:
    intake, _, _ = any_store_system.start_all("intake", "worker", "results")
    client = Api(intake.url)
    yield client
    await client.close()


async def test_a_body_sent_without_a_key_gets_401_not_read_as_an_update(api: Api) -> None:
    await api.campaign("gems")
    body = b"{" + b" " * (100 * 1024)  # beyond the 64 KiB of a parsed body, and not JSON
    answer = await api.http.patch(
        "/v1/campaigns/gems/codes/import",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert (answer.status_code, answer.json()["reasonCode"]) == (401, 90401)


async def test_numbers_out_of_range_are_refused_not_failed_on(api: Api) -> None:
    for path, params in [
        ("/v1/redemptions", {"before": -1}),
        ("/v1/redemptions", {"before": 10**17}),
        ("/v1/campaigns", {"pageNumber": 10**20}),
        ("/v1/campaigns", {"pageNumber": 10**12}),
    ]:
        answer = await api.http.get(path, params=params, headers=api.admin)
        assert (answer.status_code, answer.json()["reasonCode"]) == INVALID, (path, params)
    listed = await api.http.get("/v1/campaigns", headers=api.admin)
    moved = await api.http.get(
        f"/v1/campaigns/pages/{listed.json()['context']}",
        params={"pageOffset": 1_000_000},
        headers=api.admin,
    )
    assert (moved.status_code, moved.json()["reasonCode"]) == INVALID


@pytest.mark.timeout(60)
async def test_generating_more_codes_than_a_format_holds_is_refused_at_once(api: Api) -> None:
    await api.campaign("tiny")
    url = "/v1/campaigns/tiny/codes/generate"
    small = {"algorithmName": "Custom", "algorithmDetailsJson": {"alphabet": "AB", "length": 4}}
    for request in ({"quantity": 100, "inline": True}, {"quantity": 1_000}):
        answer = await api.http.post(url, json={**request, **small}, headers=api.admin)
        assert (answer.status_code, answer.json()["reasonCode"]) == INVALID
        assert "bits of randomness" in answer.json()["message"]
    inventory = await api.http.get("/v1/campaigns/tiny/inventory", headers=api.admin)
    assert inventory.json()["total"] == 0


async def test_a_format_needs_40_bits_beyond_log2_of_the_codes_its_campaign_would_hold(
    api: Api,
) -> None:
    # 41 characters of "AB": 41 bits, room for a campaign of 2 codes (log2 2 + 40), not 3.
    await api.campaign("edge")
    url = "/v1/campaigns/edge/codes/generate"
    bits_41 = {
        "algorithmName": "Custom",
        "algorithmDetailsJson": {"alphabet": "AB", "length": 41, "group": 0},
        "inline": True,
    }
    made = await api.http.post(url, json={**bits_41, "quantity": 2}, headers=api.admin)
    assert made.status_code == 200, made.text

    one_more = await api.http.post(url, json={**bits_41, "quantity": 1}, headers=api.admin)

    assert (one_more.status_code, one_more.json()["reasonCode"]) == INVALID
    assert "41.0 bits of randomness" in one_more.json()["message"]
    assert "a campaign of 3 codes needs at least 41.6" in one_more.json()["message"]
    inventory = await api.http.get("/v1/campaigns/edge/inventory", headers=api.admin)
    assert inventory.json()["total"] == 2


async def test_a_hashed_campaigns_format_counts_only_what_a_masked_code_hides(api: Api) -> None:
    await api.campaign("sealed", hashCodes=True)
    url = "/v1/campaigns/sealed/codes/generate"

    def of_length(length: int) -> dict[str, object]:
        details = {"alphabet": "AB", "length": length, "group": 0}
        return {
            "algorithmName": "Custom",
            "algorithmDetailsJson": details,
            "quantity": 1,
            "inline": True,
        }

    # 44 characters, the last 4 shown by every masked answer: 40 hidden bits, enough for
    # one code, and 43 characters are not.
    refused = await api.http.post(url, json=of_length(43), headers=api.admin)
    assert (refused.status_code, refused.json()["reasonCode"]) == INVALID
    assert "beyond the last four characters a masked code shows" in refused.json()["message"]
    accepted = await api.http.post(url, json=of_length(44), headers=api.admin)
    assert accepted.status_code == 200, accepted.text
    assert len(accepted.json()["generatedScanCodes"]) == 1


async def test_a_user_id_with_a_control_character_is_refused_over_http_and_amqp(
    api: Api, broker: Broker
) -> None:
    await api.campaign("cards")
    await api.code("cards", "CARD-1")
    over_http = await api.redeem("eve\nINFO redeemed by admin", "CARD-1", wait=None)
    assert (over_http.status_code, over_http.json()["reasonCode"]) == INVALID

    command = {"userId": "eve\x1b[2J", "scanCode": "CARD-1", "codeType": "cards"}
    _, over_amqp = await ask(broker, command, "eve-1")
    assert (over_amqp["status"], over_amqp["reasonCode"]) == INVALID
    assert "userId" in over_amqp["message"]
    assert (await api.lookup("cards", "CARD-1"))["codeState"] == "Available"


async def test_a_csv_export_quotes_what_a_spreadsheet_would_run(api: Api) -> None:
    await api.campaign("sheet")
    await api.code("sheet", "-A1", customCodeInfo={"note": "=cmd"})
    redeemed = await api.redeem('=HYPERLINK("https://evil.example")', "-A1")
    assert redeemed.status_code == 200, redeemed.text

    export = await api.http.get("/v1/campaigns/sheet/codes/export", headers=api.admin)

    [row] = list(csv.DictReader(io.StringIO(export.text)))
    assert row["scanCode"] == "'-A1"
    assert row["redeemedByUserId"] == '\'=HYPERLINK("https://evil.example")'
    assert json.loads(row["customCodeInfo"]) == {"note": "=cmd"}
