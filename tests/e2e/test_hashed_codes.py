"""Codes safe at rest, through the running system on both stores: a campaign with
`hashCodes` redeems its codes as typed, shows them only masked (answers, replies,
events, exports), and hands a generation job's codes out once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.support.processes import System
from shared import topology
from shared.adapters.rabbitmq import Broker
from tests.conftest import running
from tests.support.amqp import Tap, ask
from tests.support.api import Api
from tests.support.wait import eventually

CODE = "VAULT-7K2P-9QXA"
MASKED = "••••9QXA"


@pytest.fixture
def hashing(each_store_env: dict[str, str], tmp_path: Path) -> Iterator[System]:
    """The system on each store."""
    with running(each_store_env, tmp_path) as system:
        yield system


@pytest.fixture
async def api(hashing: System) -> AsyncIterator[Api]:
    intake, _, _ = hashing.start_all("intake", "worker", "results")
    client = Api(intake.url)
    yield client
    await client.close()


async def generated(api: Api, quantity: int) -> tuple[str, list[str]]:
    """A job of `quantity` Available codes in the campaign `vault`, run to its end."""
    started = await api.http.post(
        "/v1/campaigns/vault/codes/generate",
        headers=api.admin,
        json={"quantity": quantity, "codeState": "Available"},
    )
    assert started.status_code == 202, started.text
    job_id = started.json()["jobId"]

    async def job() -> dict[str, Any]:
        return dict((await api.http.get(f"/v1/jobs/{job_id}", headers=api.admin)).json())

    done = await eventually(job, until=lambda j: j["state"] == "Completed", what="the job")
    assert done["codesUntil"] is not None and done["handedOutAt"] is None
    download = await api.http.get(f"/v1/jobs/{job_id}/codes?format=ndjson", headers=api.admin)
    assert download.status_code == 200, download.text
    return job_id, [json.loads(line)["scanCode"] for line in download.text.splitlines()]


async def test_a_hashed_campaign_redeems_codes_as_typed_and_shows_them_only_masked(
    api: Api, broker: Broker
) -> None:
    events = await Tap.on(broker, topology.EVENTS_EXCHANGE, "code.#")
    created = await api.campaign("vault", hashCodes=True)
    assert created["hashCodes"] is True
    added = await api.code("vault", CODE)
    assert added["scanCode"] == MASKED
    imported = await api.http.post(
        "/v1/campaigns/vault/codes/import?format=ndjson",
        headers=api.admin,
        content=b'{"scanCode": "VAULT-IMPO-RT01", "codeState": "Available"}\n'
        b'{"scanCode": "VAULT-VOID-0002", "codeState": "Available"}\n',
    )
    assert imported.json()["added"] == 2, imported.text
    job_id, codes = await generated(api, 3)
    assert len(set(codes)) == 3 and all("•" not in code for code in codes)

    # Redeemed by the code as typed, sloppily, with or without the campaign named.
    redeemed = await api.redeem("alice", "vault 7k2p 9qxa", codeType="vault")
    assert redeemed.status_code == 200, redeemed.text
    assert redeemed.json()["scanCode"] == MASKED  # the code redeemed
    by_code_alone = await api.redeem("bob", codes[0].lower())
    assert by_code_alone.status_code == 200, by_code_alone.text
    assert by_code_alone.json()["codeType"] == "vault"
    _, reply = await ask(broker, {"userId": "carol", "scanCode": codes[1]}, "c-1")
    assert reply["status"] == "Redeemed" and reply["scanCode"] == "••••" + codes[1][-4:]

    # Refusals as for any code.
    other = await api.redeem("mallory", CODE, codeType="vault")
    assert (other.status_code, other.json()["reasonCode"]) == (409, 40403)
    wrong = await api.redeem("mallory", "VAULT-7K2P-9QXB", codeType="vault")
    assert (wrong.status_code, wrong.json()["reasonCode"]) == (404, 40395)
    voided = await api.http.post(
        "/v1/campaigns/vault/codes/vault-void-0002/invalidate", headers=api.admin, json={}
    )
    assert voided.status_code == 200 and voided.json()["scanCode"] == "••••0002", voided.text
    void = await api.redeem("mallory", "VAULT-VOID-0002", codeType="vault")
    assert (void.status_code, void.json()["reasonCode"]) == (409, 40400)

    # Operators address a code by what was typed; every answer shows it masked.
    looked_up = await api.lookup("vault", CODE)
    assert (looked_up["scanCode"], looked_up["codeState"]) == (MASKED, "Redeemed")
    redemption = await api.redemption(redeemed.json()["redemptionId"])
    assert (redemption.json()["scanCode"], redemption.json()["code"]["scanCode"]) == (
        MASKED,
        MASKED,
    )
    mine = await api.http.get("/v1/users/alice/redeemed-codes", headers=api.redeemer)
    assert [c["scanCode"] for c in mine.json()["codes"]] == [MASKED]
    recent = await api.http.get("/v1/redemptions?codeType=vault", headers=api.admin)
    export = await api.http.get("/v1/campaigns/vault/codes/export", headers=api.admin)
    assert export.status_code == 200
    assert len(export.text.splitlines()) == 1 + 6
    await events.wait_for(4)  # a redemption by each of three users, an invalidation
    seen = [recent.text, export.text, json.dumps(events.bodies())]
    for plain in (CODE, "VAULT7K2P9QXA", "VAULT-IMPO-RT01", "VAULT-VOID-0002", *codes):
        assert not any(plain in text or plain.replace("-", "") in text for text in seen), plain
    assert all(e["code"]["scanCode"].startswith("••••") for e in events.bodies())
    await events.close()

    # The job's codes were handed out by the first download: there is no second.
    again = await api.http.get(f"/v1/jobs/{job_id}/codes", headers=api.admin)
    assert (again.status_code, again.json()["reasonCode"]) == (410, 90411)
    job = (await api.http.get(f"/v1/jobs/{job_id}", headers=api.admin)).json()
    assert job["handedOutAt"] is not None


async def test_hashed_codes_are_set_at_creation_and_for_personal_codes_only(api: Api) -> None:
    await api.campaign("vault", hashCodes=True)
    changed = await api.http.patch(
        "/v1/campaigns/vault", headers=api.admin, json={"version": 1, "hashCodes": False}
    )
    assert changed.status_code == 422, changed.text
    shared = await api.http.post(
        "/v1/campaigns",
        headers=api.admin,
        json={"codeType": "free", "codeUseType": "MULTI", "scanCode": "FREE", "hashCodes": True},
    )
    assert (shared.status_code, shared.json()["reasonCode"]) == (422, 40660)
    inline = await api.http.post(
        "/v1/campaigns/vault/codes/generate",
        headers=api.admin,
        json={"quantity": 2, "inline": True, "codeState": "Available"},
    )
    assert inline.status_code == 200, inline.text
    [first, _] = inline.json()["generatedScanCodes"]
    assert "•" not in first
    assert (await api.redeem("alice", first, codeType="vault")).status_code == 200


async def test_a_service_without_a_code_secret_refuses_hashed_codes(system: System) -> None:
    """On MongoDB no code secret is made up: without one, hashed codes are refused."""
    intake = system.start("intake", REDEEM_CODE_SECRET="")
    client = Api(intake.url)
    try:
        refused = await client.http.post(
            "/v1/campaigns", headers=client.admin, json={"codeType": "vault", "hashCodes": True}
        )
        assert (refused.status_code, refused.json()["reasonCode"]) == (501, 90501)
        await client.campaign("plain")
    finally:
        await client.close()
