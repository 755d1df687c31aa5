"""Least privilege through the running system, on both stores: keys given as digests,
keys limited to campaigns (redeem and admin) and to handlers (fulfillment, over HTTP
and AMQP), async responses that must name their code, redemption ids keyed by a server
secret, a data directory for its owner only, and no development secret outside
development."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.support.processes import API_KEYS, REDEMPTION_ID_SECRET, System, system_env
from shared import topology
from shared.adapters.rabbitmq import Broker
from shared.domain.access import digest_of
from shared.domain.redemptions import RedemptionIds
from shared.runtime.startup import REDEMPTION_ID_SECRET_FILE
from tests.conftest import running
from tests.support.amqp import ask
from tests.support.api import Api
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e
FORBIDDEN, UNAUTHENTICATED, ATTEMPT_ERROR = 90403, 90401, 40759
OPS_KEY = "ops-key-for-gems"  # admin of gems only, given as its digest
SHOP_KEY = "shop-key-for-gems"  # redeems in gems only
PARTNER_KEY = "partner-key-of-the-handler"  # answers simulated-partner's attempts, as a digest
OTHER_PARTNER_KEY = "partner-key-of-another-handler"
LIMITED_KEYS = ";".join(
    [
        API_KEYS,
        f"{digest_of(OPS_KEY)}=admin|campaigns=gems",
        f"{SHOP_KEY}=redeem|campaigns=gems",
        f"{digest_of(PARTNER_KEY)}=fulfillment|handlers=simulated-partner",
        f"{OTHER_PARTNER_KEY}=fulfillment|handlers=someone-else",
    ]
)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def limited(each_store_env: dict[str, str], tmp_path: Path) -> Iterator[System]:
    """The system with keys limited to campaigns and handlers, on each store."""
    with running({**each_store_env, "REDEEM_API_KEYS": LIMITED_KEYS}, tmp_path) as system:
        yield system


@pytest.fixture
async def api(limited: System) -> AsyncIterator[Api]:
    intake, _, _ = limited.start_all("intake", "worker", "results")
    client = Api(intake.url)
    yield client
    await client.close()


def refused_with(answer: httpx.Response, reason: int) -> bool:
    return answer.status_code in (401, 403, 409) and answer.json()["reasonCode"] == reason


async def test_a_key_given_as_its_digest_admits_the_key_not_the_digest(api: Api) -> None:
    await api.campaign("gems")
    assert (await api.http.get("/v1/campaigns/gems", headers=bearer(OPS_KEY))).status_code == 200
    as_digest = await api.http.get("/v1/campaigns/gems", headers=bearer(digest_of(OPS_KEY)))
    assert refused_with(as_digest, UNAUTHENTICATED)


async def test_a_redeem_key_limited_to_campaigns_is_refused_elsewhere_before_anything(
    api: Api, broker: Broker
) -> None:
    await api.campaign("gems")
    await api.campaign("other")
    await api.code("gems", "GEMS-1")
    await api.code("other", "OTHER-1")
    other = await api.lookup("other", "OTHER-1")
    shop = bearer(SHOP_KEY)

    async def redeem(scan: str, **fields: Any) -> httpx.Response:
        body = {"userId": "alice", "scanCode": scan, **fields}
        return await api.http.post("/v1/redemptions?wait=20", headers=shop, json=body)

    assert refused_with(await redeem("OTHER-1", codeType="other"), FORBIDDEN)
    assert refused_with(await redeem("OTHER-1"), FORBIDDEN)  # it must name its campaign
    command = {"userId": "alice", "scanCode": "OTHER-1", "codeType": "other"}
    key = {topology.AUTHORIZATION_HEADER: f"Bearer {SHOP_KEY}"}
    _, over_amqp = await ask(broker, command, "c-1", headers=key)
    assert (over_amqp["status"], over_amqp["reasonCode"]) == (403, FORBIDDEN)
    assert await api.lookup("other", "OTHER-1") == other
    seen = await api.http.get("/v1/redemptions", headers=api.admin)
    assert seen.json()["items"] == [], "nothing was even recorded"

    assert (await redeem("GEMS-1", codeType="gems")).status_code == 200
    theirs = await api.redeem("alice", "OTHER-1", codeType="other")  # an unlimited key
    assert theirs.status_code == 200
    rid = theirs.json()["redemptionId"]
    assert refused_with(await api.http.get(f"/v1/redemptions/{rid}", headers=shop), FORBIDDEN)
    codes = await api.http.get("/v1/users/alice/redeemed-codes", headers=shop)
    assert [c["scanCode"] for c in codes.json()["codes"]] == ["GEMS-1"]
    every = await api.http.get("/v1/users/alice/redeemed-codes", headers=api.redeemer)
    assert sorted(c["scanCode"] for c in every.json()["codes"]) == ["GEMS-1", "OTHER-1"]


async def test_an_admin_key_limited_to_campaigns_sees_and_changes_only_those(api: Api) -> None:
    for name in ("alpha", "gems", "other"):
        await api.campaign(name)
    await api.code("other", "OTHER-1")
    other = await api.lookup("other", "OTHER-1")
    await api.redeem("bob", "NOPE-1", codeType="other")
    ops = bearer(OPS_KEY)

    listed = (await api.http.get("/v1/campaigns?rowsPerPage=1", headers=ops)).json()
    assert [c["codeType"] for c in listed["results"]["items"]] == ["gems"]
    assert listed["results"]["count"] == 1
    everything = (await api.http.get("/v1/campaigns?rowsPerPage=1", headers=api.admin)).json()
    assert everything["results"]["count"] == 3
    moved = await api.http.get(f"/v1/campaigns/pages/{everything['context']}", headers=ops)
    assert [c["codeType"] for c in moved.json()["results"]["items"]] == ["gems"]

    attempts: list[tuple[str, str, Any]] = [
        ("GET", "/v1/campaigns/other", None),
        ("PATCH", "/v1/campaigns/other", {"version": 1, "isDisabled": True}),
        ("POST", "/v1/campaigns", {"codeType": "mine"}),
        ("POST", "/v1/campaigns/other/codes", {"scanCode": "X-1", "codeState": "Available"}),
        ("POST", "/v1/campaigns/other/codes/OTHER-1/invalidate", None),
        ("DELETE", "/v1/campaigns/other/codes", None),
        ("GET", "/v1/campaigns/other/codes/export", None),
        ("GET", "/v1/redemptions?codeType=other", None),
        ("DELETE", "/v1/lockouts/user:bob", None),
    ]
    for method, path, body in attempts:
        answer = await api.http.request(method, path, headers=ops, json=body)
        assert refused_with(answer, FORBIDDEN), (method, path, answer.text)
    imported = await api.http.post(
        "/v1/campaigns/other/codes/import?format=csv", headers=ops, content=b"scanCode\nX-2\n"
    )
    assert refused_with(imported, FORBIDDEN)

    assert await api.lookup("other", "OTHER-1") == other
    campaign = (await api.http.get("/v1/campaigns/other", headers=api.admin)).json()
    assert (campaign["version"], campaign["isDisabled"]) == (1, False)
    assert (
        await api.http.post(
            "/v1/campaigns/gems/codes",
            headers=ops,
            json={"scanCode": "GEMS-2", "codeState": "Available"},
        )
    ).status_code == 201
    await api.redeem("carol", "GEMS-2", codeType="gems")
    recent = (await api.http.get("/v1/redemptions", headers=ops)).json()["items"]
    assert [(r["userId"], r["codeType"]) for r in recent] == [("carol", "gems")]
    assert (await api.http.get("/v1/lockouts", headers=ops)).json()["items"] == []


async def waiting_attempt(api: Api) -> tuple[str, dict[str, Any]]:
    """A redemption whose partner answers later: its id and its code, waiting."""
    await api.campaign(
        "parcels", handler="simulated-partner", timeout=60, pollInterval=60, **{"async": True}
    )
    await api.code("parcels", "PARCEL-1", customCodeInfo={"simulate": {"delayS": 3600}})
    accepted = await api.redeem("dora", "PARCEL-1", codeType="parcels", wait=None)
    code = await eventually(
        lambda: api.lookup("parcels", "PARCEL-1"),
        until=lambda c: c["attemptState"] == "Waiting",
        what="the partner's first answer: not yet",
    )
    return accepted.json()["redemptionId"], code


async def test_a_partner_key_answers_only_its_handlers_attempts_naming_their_code(
    api: Api, broker: Broker
) -> None:
    rid, waiting = await waiting_attempt(api)
    code_id = waiting["redemptionCodeId"]
    done = {"success": True, "complete": True}
    named = {"attempt": 0, "asyncResponse": done, "redemptionCodeId": code_id}

    async def respond(key: str, body: dict[str, Any]) -> httpx.Response:
        path = f"/v1/redemptions/{rid}/async-response"
        return await api.http.post(path, headers=bearer(key), json=body)

    async def respond_over_amqp(key: str | None, body: dict[str, Any]) -> dict[str, Any]:
        headers = {topology.AUTHORIZATION_HEADER: f"Bearer {key}"} if key else None
        command = {"redemptionId": rid, **body}
        route = topology.ASYNC_RESPONSE_ROUTING_KEY
        _, reply = await ask(broker, command, "c-1", routing_key=route, headers=headers)
        return reply

    assert refused_with(await respond(OTHER_PARTNER_KEY, named), FORBIDDEN)
    unnamed = {"attempt": 0, "asyncResponse": done, "scanCode": "PARCEL-1"}
    assert refused_with(await respond(PARTNER_KEY, unnamed), ATTEMPT_ERROR)
    assert (await respond_over_amqp(OTHER_PARTNER_KEY, named))["reasonCode"] == FORBIDDEN
    assert (await respond_over_amqp(None, named))["reasonCode"] == UNAUTHENTICATED
    assert (await respond_over_amqp(PARTNER_KEY, unnamed))["reasonCode"] == ATTEMPT_ERROR
    assert await api.lookup("parcels", "PARCEL-1") == waiting, "a refused answer changes nothing"

    recorded = await respond_over_amqp(PARTNER_KEY, named)
    assert recorded["codeState"] == "Redeemed"
    assert (await respond(PARTNER_KEY, named)).json()["codeState"] == "Redeemed"  # a repeat


async def test_redemption_ids_hold_across_intakes_and_restarts_and_need_the_secret(
    api: Api, limited: System
) -> None:
    await api.campaign("gems")
    second = limited.start("intake")
    body = {"userId": "erin", "scanCode": "NOPE-1", "codeType": "gems", "requestId": "q-1"}

    async def named_by(url: str) -> str:
        async with httpx.AsyncClient(base_url=url) as http:
            answer = await http.post("/v1/redemptions", headers=api.redeemer, json=body)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["redemptionId"])

    rid = await named_by(str(api.http.base_url))
    assert await named_by(second.url) == rid
    assert await named_by(limited.restart(second).url) == rid
    assert rid == RedemptionIds(REDEMPTION_ID_SECRET)("erin", "q-1")
    assert rid != RedemptionIds("another-secret")("erin", "q-1")


async def test_on_the_embedded_store_an_unset_secret_is_made_once_in_a_private_data_dir(
    amqp_url: str, db_name: str, tmp_path: Path
) -> None:
    data = tmp_path / "state" / "data"
    env = system_env(
        rabbitmq_url=amqp_url, mongodb_url="", db=db_name, api_keys=API_KEYS, data_dir=data
    )
    del env["REDEEM_REDEMPTION_ID_SECRET"]
    system = System(env, tmp_path)
    try:
        intake, _, _ = system.start_all("intake", "worker", "results")
        api = Api(intake.url)
        await api.campaign("gems")
        await api.code("gems", "GEMS-1")
        first = await api.redeem("fay", "GEMS-1", codeType="gems", requestId="q-1")
        await api.close()
        files = {f.name: mode(f) for f in data.iterdir()}  # while the store is open
        api = Api(system.restart(intake).url)
        again = await api.redeem("fay", "GEMS-1", codeType="gems", requestId="q-1")
        await api.close()
    finally:
        system.stop()
    assert first.status_code == again.status_code == 200
    assert first.json()["redemptionId"] == again.json()["redemptionId"]
    secret = (data / REDEMPTION_ID_SECRET_FILE).read_text().strip()
    assert first.json()["redemptionId"] == RedemptionIds(secret)("fay", "q-1")
    assert mode(tmp_path / "state") == mode(data) == 0o700
    store = ["redeem.sqlite3", "redeem.sqlite3-shm", "redeem.sqlite3-wal"]
    assert files == dict.fromkeys([REDEMPTION_ID_SECRET_FILE, *store], 0o600)


def beside(system: System, logs: str, env: dict[str, str]) -> System:
    """Processes of `system`'s store and broker with `env` added, logging apart."""
    (system.logs / logs).mkdir()
    return System({**system.env, **env}, system.logs / logs)


def exit_line(system: System, name: str, env: dict[str, str]) -> str:
    """What a service that refuses to start says: its one line."""
    service = beside(system, f"{name}-{len(list(system.logs.iterdir()))}", env).start(
        name, ready=False
    )
    assert service.process.wait(60) == 2
    [line] = service.log().splitlines()
    return line


async def test_services_refuse_development_secrets_and_a_missing_id_secret_on_mongodb(
    system: System,
) -> None:
    development = {"REDEEM_API_KEYS": "dev-admin-key=admin;dev-redeem-key=redeem"}
    for name in ("intake", "worker", "results"):
        line = exit_line(system, name, development)
        assert line.startswith(f"{name} not started: REDEEM_API_KEYS holds the development")
    secret = {"REDEEM_CONTEXT_SECRET": "change-me-in-production"}
    assert "REDEEM_CONTEXT_SECRET" in exit_line(system, "intake", secret)
    unset = {"REDEEM_REDEMPTION_ID_SECRET": ""}
    assert "REDEEM_REDEMPTION_ID_SECRET is not set" in exit_line(system, "intake", unset)

    data = str(system.logs / "data")
    told = {"REDEEM_ENVIRONMENT": "development", "REDEEM_DATA_DIR": data, **development, **unset}
    # In development too, not beside secrets of one's own (docker-compose's, all or none).
    assert "beside your own REDEEM_CODE_SECRET" in exit_line(system, "intake", told)
    told |= {"REDEEM_CODE_SECRET": "", "REDEEM_WEBHOOK_SECRETS": ""}
    dev = beside(system, "development", told)
    try:
        intake = dev.start("intake")  # ready: it answers
        async with httpx.AsyncClient(base_url=intake.url) as http:
            campaigns = await http.get("/v1/campaigns", headers=bearer("dev-admin-key"))
    finally:
        dev.stop()
    assert campaigns.status_code == 200
