"""Bulk import and export over HTTP, streamed."""

from __future__ import annotations

import csv
import io
import json

import pytest

from tests.support.api import Api
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e
# Lines of every kind a file may hold, over HTTP; batches are proven by the unit tests
# (tests/unit/test_bulk_lines.py) and scale by bench.bulk.
ROWS = 1_000


def inventory_file() -> tuple[bytes, dict[int, str]]:
    """`ROWS` rows, 1% of them bad in one of several ways; the bad lines and why."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["scanCode", "codeState", "customCodeInfo"])
    bad: dict[int, str] = {}
    for n in range(ROWS):
        line = n + 2
        row = [f"IMP-{n:06d}", "Available" if n % 2 else "Inactive", json.dumps({"n": n})]
        if n % 100 == 7:
            kind = n // 100 % 4
            row = [
                ["", "Inactive", ""],
                [f"IMP-{n}$", "Inactive", ""],
                [f"IMP-{n:06d}", "Redeemed", ""],
                [f"IMP-{n:06d}", "Inactive", "{oops"],
            ][kind]
            bad[line] = ["scanCode", "scanCode", "codeState", "JSON"][kind]
        writer.writerow(row)
    return out.getvalue().encode(), bad


async def test_an_import_stores_good_rows_reports_bad_ones_and_is_idempotent(api: Api) -> None:
    await api.campaign("bulk")
    body, bad = inventory_file()
    headers = {**api.admin, "content-type": "text/csv"}

    first = await api.http.post("/v1/campaigns/bulk/codes/import", headers=headers, content=body)

    assert first.status_code == 200, first.text
    report = first.json()
    assert (report["rows"], report["added"], report["unchanged"], report["rejected"]) == (
        ROWS,
        ROWS - len(bad),
        0,
        len(bad),
    )
    assert {e["line"] for e in report["errors"]} == set(bad)
    for error in report["errors"]:
        assert error["reasonCode"] in (40569, 40660)
    second = (
        await api.http.post("/v1/campaigns/bulk/codes/import", headers=headers, content=body)
    ).json()
    assert (second["added"], second["unchanged"], second["rejected"]) == (
        0,
        ROWS - len(bad),
        len(bad),
    )
    inventory = (await api.http.get("/v1/campaigns/bulk/inventory", headers=api.admin)).json()
    assert inventory["total"] == ROWS - len(bad)
    code = await api.lookup("bulk", "IMP-000001")
    assert (code["codeState"], code["customCodeInfo"]) == ("Available", {"n": 1})


async def test_an_export_streams_every_code_in_csv_and_ndjson(api: Api) -> None:
    await api.campaign("out")
    lines = "\n".join(
        json.dumps({"scanCode": f"OUT-{n}", "customCodeInfo": {"n": n}}) for n in range(2_500)
    )
    imported = await api.http.post(
        "/v1/campaigns/out/codes/import?format=ndjson", headers=api.admin, content=lines.encode()
    )
    assert imported.json()["added"] == 2_500
    as_csv = await api.http.get("/v1/campaigns/out/codes/export", headers=api.admin)
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert len(rows) == 2_500
    assert {r["scanCode"] for r in rows} == {f"OUT-{n}" for n in range(2_500)}
    assert json.loads(rows[0]["customCodeInfo"])["n"] >= 0
    as_ndjson = await api.http.get(
        "/v1/campaigns/out/codes/export", params={"format": "ndjson"}, headers=api.admin
    )
    records = [json.loads(line) for line in as_ndjson.text.splitlines()]
    assert sorted(r["scanCode"] for r in records) == sorted(r["scanCode"] for r in rows)
    reimported = await api.http.post(
        "/v1/campaigns/out/codes/import", headers=api.admin, content=as_csv.content
    )
    assert reimported.json()["unchanged"] == 2_500, "an export imports back unchanged"


async def test_a_file_that_is_not_an_inventory_gets_a_reason(api: Api) -> None:
    await api.campaign("junk")
    answer = await api.http.post(
        "/v1/campaigns/junk/codes/import", headers=api.admin, content=b"code,state\nA,B\n"
    )
    assert (answer.status_code, answer.json()["reasonCode"]) == (422, 40660)
    missing = await api.http.post(
        "/v1/campaigns/none/codes/import", headers=api.admin, content=b"scanCode\nA\n"
    )
    assert (missing.status_code, missing.json()["reasonCode"]) == (404, 40399)


async def test_codes_are_generated_inline_or_in_a_job_with_a_download(api: Api) -> None:
    await api.campaign("gen")
    url = "/v1/campaigns/gen/codes/generate"
    inline = await api.http.post(
        url,
        headers=api.admin,
        json={
            "quantity": 100,
            "inline": True,
            "algorithmName": "FiveByFive",
            "algorithmDetailsJson": {"includeCheck": True},
        },
    )
    assert inline.status_code == 200, inline.text
    assert len(set(inline.json()["generatedScanCodes"])) == 100
    too_many = await api.http.post(url, headers=api.admin, json={"quantity": 101, "inline": True})
    assert (too_many.status_code, too_many.json()["reasonCode"]) == (422, 40660)
    unknown = await api.http.post(
        url, headers=api.admin, json={"quantity": 5, "algorithmName": "Nope"}
    )
    assert (unknown.status_code, unknown.json()["reasonCode"]) == (422, 40660)

    started = await api.http.post(
        url,
        headers=api.admin,
        json={
            "quantity": 1_000,
            "algorithmName": "Custom",
            "prefix": "GC",
            # 12 characters: enough randomness for the campaign's 1,100 codes
            "algorithmDetailsJson": {"length": 12, "group": 6},
            "codeState": "Available",
        },
    )
    assert started.status_code == 202, started.text
    job_id = started.json()["jobId"]

    async def job() -> dict[str, object]:
        answer = await api.http.get(f"/v1/jobs/{job_id}", headers=api.admin)
        return dict(answer.json())

    done = await eventually(
        job, until=lambda j: j["state"] == "Completed", timeout_s=120, what="the generation job"
    )
    assert done["done"] == 1_000
    download = await api.http.get(f"/v1/jobs/{job_id}/codes", headers=api.admin)
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert len({r["scanCode"] for r in rows}) == 1_000
    assert all(r["scanCode"].startswith("GC-") and r["codeState"] == "Available" for r in rows)
    inventory = (await api.http.get("/v1/campaigns/gen/inventory", headers=api.admin)).json()
    assert inventory["counts"] == {**inventory["counts"], "Inactive": 100, "Available": 1_000}
