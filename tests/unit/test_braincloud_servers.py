"""`/s2sdispatcher` in process, over the in-memory store: what a server's bad packets
and requests are answered with (always an HTTP 200), and that they change nothing. The
running system is driven in tests/e2e/test_braincloud_s2s.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

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
        api_keys="admin-key=admin", braincloud_servers="srv=secret", braincloud_wait_s=0.05
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
    [entry] = answer.json()["messageResponses"]
    assert entry["reason_code"] == expected and entry["status_message"]
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
