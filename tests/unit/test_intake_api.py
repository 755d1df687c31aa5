"""The intake bootstrapped with fakes: its routes, its command model and its refusals."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.intake.auth import key_id
from services.intake.redemptions import job_for
from services.intake.refusals import refusal
from shared import topology
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.redemptions import RedemptionIds
from shared.messages import JobMessage, RedeemCommand, RedemptionJob, parse
from shared.runtime.settings import Settings
from tests.fakes import FakeStore
from tests.unit.intake_harness import REDEMPTION_ID_SECRET, RecordingBroker, intake_client

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ADMIN = {"Authorization": "Bearer admin-key"}
IDS = RedemptionIds(REDEMPTION_ID_SECRET)
SETTINGS = Settings(api_keys="admin-key=admin", context_secret="secret")


async def test_a_campaign_keeps_its_wire_names_both_ways(api: httpx.AsyncClient) -> None:
    sent = {
        "codeType": "gems",
        "handler": "partner",
        "async": True,
        "pollInterval": 5.0,
        "retryBackoff": {"max": 9},
    }
    created = await api.post("/v1/campaigns", json=sent, headers=ADMIN)
    assert created.status_code == 201, created.text
    read = (await api.get("/v1/campaigns/gems", headers=ADMIN)).json()
    assert read == created.json()
    assert (read["async"], read["pollInterval"], read["retryBackoff"]["max"]) == (True, 5.0, 9)
    assert "code_type" not in read and read["createdAt"] == int(NOW.timestamp() * 1000)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/campaigns", {"code_type": "gems"}, "code_type"),
        ("/v1/redemptions", {"userId": "u1", "scanCode": "A1", "request_id": "r"}, "request_id"),
        ("/v1/redemptions", {"userId": "u1", "scanCode": "A1", "addedLater": 1}, "addedLater"),
    ],
)
async def test_an_http_body_is_read_by_its_wire_names_only(
    api: httpx.AsyncClient, path: str, body: dict[str, object], field: str
) -> None:
    answer = await api.post(path, json=body, headers=ADMIN)
    assert answer.status_code == 422
    assert answer.json()["reasonCode"] == ReasonCode.INVALID_PARAMETER_VALUE
    assert f"body.{field}: Extra inputs are not permitted" in answer.json()["message"]


def test_an_amqp_command_ignores_fields_it_does_not_know_but_not_snake_case_names() -> None:
    known = parse(RedeemCommand, b'{"userId": "u1", "scanCode": "A1", "addedLater": 1}')
    assert (known.user_id, known.scan_code) == ("u1", "A1")
    with pytest.raises(DomainError, match="userId: Field required"):
        parse(RedeemCommand, b'{"user_id": "u1", "scanCode": "A1"}')


async def test_redeem_over_http_publishes_the_job_amqp_would(
    api: httpx.AsyncClient, broker: RecordingBroker
) -> None:
    command = {"userId": "u1", "scanCode": "abc-1", "codeType": "gems", "requestId": "r1"}
    answer = await api.post("/v1/redemptions", json=command, headers=ADMIN)
    assert answer.status_code == 202
    assert answer.json() == {
        "redemptionId": IDS("u1", "r1"),
        "requestId": "r1",
        "status": "Pending",
    }
    [published] = broker.published
    assert (published.exchange, published.routing_key) == (
        topology.WORK_EXCHANGE,
        topology.REDEEM_ROUTING_KEY,
    )
    over_amqp = job_for(
        parse(RedeemCommand, json.dumps(command).encode()), clock=lambda: NOW, ids=IDS
    )
    over_http = RedemptionJob.model_validate_json(published.body)
    # The same job, but for who asked: an HTTP caller has a key and an address.
    assert over_http.model_copy(update={"keyId": None, "clientAddress": None}) == over_amqp
    assert (over_http.keyId, over_http.clientAddress) == (key_id("admin-key"), "127.0.0.1")


async def test_a_refusal_is_the_same_body_over_http_and_amqp(api: httpx.AsyncClient) -> None:
    command = {"userId": "u1", "scanCode": "no!"}
    answer = await api.post("/v1/redemptions", json=command, headers=ADMIN)
    with pytest.raises(DomainError) as refused:
        job_for(parse(RedeemCommand, json.dumps(command).encode()), clock=lambda: NOW, ids=IDS)
    over_amqp = refusal(refused.value.reason, refused.value.message)
    assert answer.status_code == over_amqp.status == 422
    assert answer.json() == over_amqp.model_dump()


async def test_generating_codes_publishes_a_job_and_inline_generation_does_not(
    api: httpx.AsyncClient, broker: RecordingBroker
) -> None:
    await api.post("/v1/campaigns", json={"codeType": "gems"}, headers=ADMIN)
    path = "/v1/campaigns/gems/codes/generate"
    inline = await api.post(path, json={"quantity": 2, "inline": True}, headers=ADMIN)
    assert inline.status_code == 200 and len(inline.json()["generatedScanCodes"]) == 2
    assert broker.published == []
    job = await api.post(path, json={"quantity": 5}, headers=ADMIN)
    assert job.status_code == 202
    [published] = broker.published
    assert JobMessage.model_validate_json(published.body).jobId == job.json()["jobId"]
    progress = await api.get(f"/v1/jobs/{job.json()['jobId']}", headers=ADMIN)
    assert progress.json()["state"] == job.json()["state"]


class AwayBroker(RecordingBroker):
    async def publish(self, exchange: str, routing_key: str, body: bytes, **options: Any) -> None:
        raise ConnectionError("the broker is away")


async def test_a_redemption_the_broker_did_not_take_is_refused_503_to_send_again() -> None:
    async with intake_client(FakeStore(), AwayBroker(), Settings(api_keys="admin-key=admin")) as (
        client,
        _,
    ):
        answer = await client.post(
            "/v1/redemptions", json={"userId": "u1", "scanCode": "ABC-1"}, headers=ADMIN
        )
    assert (answer.status_code, answer.json()["reasonCode"]) == (503, 90503)
    assert "same requestId" in answer.json()["message"]
