"""`/s2sdispatcher` in process, over the in-memory store: what a server's bad packets
and requests are answered with (always an HTTP 200), and that they change nothing. The
running system is driven in tests/e2e/test_braincloud_s2s.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from shared.domain.profiles import IdentityKind, Profile, Session
from shared.domain.reasons import ReasonCode
from shared.runtime.settings import Settings
from tests.fakes import FakeStore
from tests.support.s2s import S2S
from tests.unit.conftest import NOW
from tests.unit.intake_harness import RecordingBroker, intake_client

R = ReasonCode


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
async def http(store: FakeStore, broker: RecordingBroker) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        api_keys="admin-key=admin",
        braincloud_apps="app=app-secret",
        braincloud_servers="srv=secret",
        braincloud_wait_s=0.05,
    )
    async with intake_client(store, broker, settings, lambda: NOW) as (client, _):
        yield client


@pytest.fixture
async def server(http: httpx.AsyncClient) -> S2S:
    s2s = S2S(http, "app", "srv", "secret")
    assert (await s2s.authenticate())["status"] == 200
    return s2s


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{nope", R.JSON_PARSING_ERROR),
        (b'"text"', R.INVALID_REQUEST),
        (b'{"packetId": 1, "messages": []}', R.INVALID_REQUEST),
        (b'{"packetId": 1}', R.INVALID_REQUEST),
        (json.dumps({"messages": ["x"] * 51}).encode(), R.MESSAGE_TOO_LARGE),
    ],
)
async def test_a_packet_that_is_none_is_answered_with_its_refusal(
    http: httpx.AsyncClient, broker: RecordingBroker, body: bytes, expected: ReasonCode
) -> None:
    answer = await http.post("/s2sdispatcher", content=body)
    assert answer.status_code == 200
    entries = answer.json()["messageResponses"]
    assert entries and all(e["reason_code"] == expected and e["status_message"] for e in entries)
    assert broker.published == []


@pytest.mark.parametrize("session", ["", "no-such-session"])
async def test_a_packet_without_a_live_session_is_refused_at_its_top(
    http: httpx.AsyncClient, store: FakeStore, session: str
) -> None:
    packet = {
        "packetId": 1,
        "sessionId": session,
        "messages": [{"service": "redemptionCode", "operation": "ADD_CODE", "data": {}}],
    }
    answer = (await http.post("/s2sdispatcher", json=packet)).json()
    assert answer["reason_code"] == R.SERVER_SESSION_EXPIRED and answer["packetId"] == 1
    assert answer["messageResponses"][0]["reason_code"] == R.SERVER_SESSION_EXPIRED
    assert store.codes == {}


@pytest.mark.parametrize(
    ("operation", "data", "expected"),
    [
        ("ADD_CODE", {"scanCode": "X"}, R.MISSING_REQUIRED_PARAMETER),
        ("ADD_CODE", {"codeType": 7, "scanCode": "X"}, R.INVALID_PARAMETER_TYPE),
        ("ADD_CODE", {"codeType": "nope", "scanCode": "X"}, R.REDEMPTION_CODE_TYPE_NOT_FOUND),
        ("ADD_CODE", {"codeType": "g", "scanCode": "X", "bogus": 1}, R.INVALID_PARAMETER_VALUE),
        ("REDEEM_CODE", {"scanCode": "X", "codeType": "g"}, R.MISSING_REQUIRED_PARAMETER),
        ("REDEEM_CODE", {"scanCode": "X", "profileId": "a\nb"}, R.INVALID_PARAMETER_VALUE),
        ("GET_REDEEMED_CODES", {}, R.MISSING_REQUIRED_PARAMETER),
        ("SYS_GET_CODE_TYPE_PAGE", {}, R.MISSING_REQUIRED_PARAMETER),
        ("SYS_GET_CODE_TYPE_PAGE", {"context": "{"}, R.INVALID_PARAMETER_VALUE),
        (
            "SYS_GET_CODE_TYPE_PAGE",
            {"context": {"searchCriteria": {"owner": "me"}}},
            R.INVALID_PARAMETER_VALUE,
        ),
        ("SYS_GET_CODE_TYPE_PAGE_OFFSET", {"context": "forged"}, R.INVALID_PARAMETER_VALUE),
        (
            "SYS_ADD_MULTI_USE_CODE_TYPE",
            {"codeType": "m", "jsonOptions": []},
            R.INVALID_PARAMETER_TYPE,
        ),
        (
            "GENERATE_CODES",
            {"codeType": "g", "quantity": 1, "algorithmDetailsJson": "[1]"},
            R.INVALID_PARAMETER_VALUE,
        ),
        ("PROCESS_ASYNCHRONOUS_RESPONSE", {"codeType": "g"}, R.MISSING_REQUIRED_PARAMETER),
        ("NO_SUCH", {}, R.INVALID_OPERATION),
    ],
)
async def test_a_bad_message_gets_its_refusal_and_changes_nothing(
    server: S2S,
    store: FakeStore,
    broker: RecordingBroker,
    operation: str,
    data: dict[str, Any],
    expected: ReasonCode,
) -> None:
    entry = await server.redemption(operation, **data)
    assert (entry["status"], entry["reason_code"]) == (400, expected), entry
    assert store.codes == {} and store.campaigns == {} and broker.published == []


async def test_an_unknown_service_and_a_stateless_request_without_its_server(
    server: S2S, http: httpx.AsyncClient
) -> None:
    entry = await server.call("nope", "READ")
    assert entry["reason_code"] == R.INVALID_SERVICE_CODE
    answer = await http.post(
        "/s2sdispatcher", json={"service": "redemptionCode", "operation": "ADD_CODE", "data": {}}
    )
    assert (answer.status_code, answer.json()["reason_code"]) == (
        200,
        R.MISSING_REQUIRED_PARAMETER,
    )


async def profile(store: FakeStore, profile_id: str, app_id: str = "app") -> None:
    kind = IdentityKind.ANONYMOUS
    await store.add_profile(Profile(profile_id, app_id, kind, f"anon-{profile_id}", NOW))


async def test_two_redemptions_in_one_packet_are_two_and_a_resend_is_the_same(
    server: S2S, store: FakeStore, broker: RecordingBroker
) -> None:
    await profile(store, "p1")
    message = {"service": "redemptionCode", "operation": "REDEEM_CODE"}
    packet = {
        "packetId": server.packet_id,
        "sessionId": server.session_id,
        "messages": [
            {**message, "data": {"scanCode": "AAAA-1", "profileId": "p1"}},
            {**message, "data": {"scanCode": "BBBB-2", "profileId": "p1"}},
        ],
    }
    await server.post(packet)
    await server.post(packet)  # sent again: the same two
    await server.post({**packet, "packetId": server.packet_id + 1})
    ids = [json.loads(p.body)["redemptionId"] for p in broker.published]
    assert len(set(ids)) == 4 and len(set(ids[:2])) == 2


async def test_a_server_acts_only_for_profiles_of_its_app(
    server: S2S, store: FakeStore, broker: RecordingBroker
) -> None:
    await profile(store, "theirs", app_id="another-app")
    for profile_id in ("nobody", "theirs"):
        entry = await server.redemption("REDEEM_CODE", scanCode="X", profileId=profile_id)
        assert entry["reason_code"] == R.PROFILE_NOT_FOUND
        listed = await server.redemption("GET_REDEEMED_CODES", profileId=profile_id)
        assert listed["reason_code"] == R.PROFILE_NOT_FOUND
    assert broker.published == []


async def test_a_server_names_a_configured_app_and_its_own_secret(
    http: httpx.AsyncClient,
) -> None:
    unknown_app = S2S(http, "no-such-app", "srv", "secret")
    assert (await unknown_app.authenticate())["reason_code"] == R.INVALID_GAME_ID
    request = {"appId": "app", "serverName": "srv", "serverSecret": "\ud800"}
    body = json.dumps({**request, "service": "redemptionCode", "operation": "ADD_CODE"})
    answer = await http.post("/s2sdispatcher", content=body)
    assert answer.status_code == 200
    assert answer.json()["reason_code"] == R.TOKEN_DOES_NOT_MATCH_USER


async def test_a_client_session_is_no_server_session(server: S2S, store: FakeStore) -> None:
    client = Session("s-client", "app", NOW + timedelta(hours=1), profile_id="p1")
    await store.open_session(client)
    server.session_id = "s-client"
    answer = await server.post(
        {
            "packetId": 1,
            "sessionId": "s-client",
            "messages": [{"service": "heartbeat", "operation": "HEARTBEAT"}],
        }
    )
    assert answer["reason_code"] == R.SERVER_SESSION_EXPIRED
