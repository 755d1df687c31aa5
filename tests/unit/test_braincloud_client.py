"""`/dispatcherv2` in process: packets as brainCloud's libraries send them, over the
in-memory store, publishing into a list. The official client drives the whole path in
tests/e2e/test_braincloud.py; these pin the protocol's refusals and its sessions."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from shared.domain.profiles import IdentityKind, Session
from shared.domain.reasons import ReasonCode
from shared.runtime.settings import Settings
from tests.fakes import FakeStore
from tests.unit.conftest import NOW
from tests.unit.intake_harness import RecordingBroker, intake_client

R = ReasonCode
APP, SECRET = "10001", "app-secret"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> Any:
        return self.now


class Client:
    """Packets as the JS library writes them: signed with the app's secret, numbered."""

    def __init__(self, http: httpx.AsyncClient, secret: str = SECRET) -> None:
        self.http = http
        self.secret = secret
        self.session = ""
        self.packet_id = 0

    async def send(self, *messages: dict[str, Any], body: bytes | None = None) -> httpx.Response:
        if body is None:
            packet = {
                "messages": list(messages),
                "gameId": APP,
                "sessionId": self.session,
                "packetId": self.packet_id,
            }
            body = json.dumps(packet).encode()
            self.packet_id += 1
        signature = hashlib.md5(body + self.secret.encode()).hexdigest()
        return await self.http.post(
            "/dispatcherv2",
            content=body,
            headers={
                "X-SIG": signature,
                "X-APPID": APP,
                "Content-Type": "text/plain;charset=UTF-8",
            },
        )

    async def entries(self, *messages: dict[str, Any]) -> list[dict[str, Any]]:
        answer = await self.send(*messages)
        assert answer.status_code == 200
        responses: list[dict[str, Any]] = answer.json()["responses"]
        return responses

    async def authenticate(self, external_id: str = "anon-1", **data: Any) -> dict[str, Any]:
        data = {
            "authenticationType": "Anonymous",
            "externalId": external_id,
            "forceCreate": True,
            **data,
        }
        [entry] = await self.entries(auth(**data))
        assert entry["status"] == 200, entry
        self.session = entry["data"]["sessionId"]
        answer: dict[str, Any] = entry["data"]
        return answer


def auth(**data: Any) -> dict[str, Any]:
    return {"service": "authenticationV2", "operation": "AUTHENTICATE", "data": data}


def redeem(scan_code: str = "GIFT-1", **data: Any) -> dict[str, Any]:
    return {
        "service": "redemptionCode",
        "operation": "REDEEM_CODE",
        "data": {"scanCode": scan_code, "codeType": "gems", **data},
    }


HEARTBEAT = {"service": "heartbeat", "operation": "READ"}


def reason(entry: dict[str, Any]) -> tuple[int, int]:
    return entry["status"], entry["reason_code"]


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def client(store: FakeStore, broker: RecordingBroker, clock: Clock) -> AsyncIterator[Client]:
    settings = Settings(
        api_keys="admin-key=admin",
        braincloud_apps=f"{APP}={SECRET}",
        braincloud_wait_s=0.05,
        braincloud_session_expiry_s=600,
    )
    async with intake_client(store, broker, settings, clock) as (http, _):
        yield Client(http)


async def test_an_anonymous_identity_gets_one_profile_and_a_session_each_time(
    client: Client, store: FakeStore
) -> None:
    first = await client.authenticate("anon-1")
    assert first["newUser"] == "true"
    assert first["playerSessionExpiry"] == 600 and first["maxKillCount"] == 11
    again = await client.authenticate("anon-1")
    assert again["profileId"] == first["profileId"] and again["newUser"] == "false"
    assert again["sessionId"] != first["sessionId"]
    profile = await store.find_profile(APP, IdentityKind.ANONYMOUS, "anon-1")
    assert profile is not None and profile.profile_id == first["profileId"]


async def test_an_unknown_identity_without_force_create_is_refused(client: Client) -> None:
    [entry] = await client.entries(
        auth(authenticationType="Anonymous", externalId="nobody", forceCreate=False)
    )
    assert reason(entry) == (400, R.MISSING_IDENTITY_ERROR)


async def test_a_universal_identity_keeps_a_hash_of_its_password_and_checks_it(
    client: Client, store: FakeStore
) -> None:
    data = {"authenticationType": "Universal", "authenticationToken": "hunter2"}
    created = await client.authenticate("alice", **data)
    again = await client.authenticate("alice", **data)
    assert again["profileId"] == created["profileId"]
    [wrong] = await client.entries(
        auth(**{**data, "authenticationToken": "hunter3"}, externalId="alice", forceCreate=True)
    )
    assert reason(wrong) == (400, R.TOKEN_DOES_NOT_MATCH_USER)
    profile = await store.find_profile(APP, IdentityKind.UNIVERSAL, "alice")
    assert profile is not None and profile.secret_hash is not None
    assert profile.secret_hash.startswith("scrypt$") and "hunter2" not in profile.secret_hash


async def test_a_wrong_signature_refuses_every_message_and_changes_nothing(
    client: Client, broker: RecordingBroker, store: FakeStore
) -> None:
    await client.authenticate()
    client.secret = "not-the-secret"
    entries = await client.entries(redeem(), HEARTBEAT)
    assert [reason(e) for e in entries] == [(403, R.BAD_SIGNATURE)] * 2
    assert broker.published == []


async def test_a_signature_in_upper_case_hex_is_taken(client: Client) -> None:
    body = json.dumps({"messages": [HEARTBEAT], "gameId": APP, "sessionId": "", "packetId": 0})
    signature = hashlib.md5(body.encode() + SECRET.encode()).hexdigest().upper()
    answer = await client.http.post(
        "/dispatcherv2", content=body, headers={"X-SIG": signature, "X-APPID": APP}
    )
    [entry] = answer.json()["responses"]
    assert reason(entry) == (403, R.NO_SESSION)  # signed right: refused for the session


async def test_an_unknown_app_is_refused(client: Client) -> None:
    body = json.dumps({"messages": [HEARTBEAT], "gameId": "99999", "sessionId": "", "packetId": 0})
    signature = hashlib.md5(body.encode() + SECRET.encode()).hexdigest()
    answer = await client.http.post("/dispatcherv2", content=body, headers={"X-SIG": signature})
    assert answer.status_code == 200
    assert reason(answer.json()["responses"][0]) == (400, R.INVALID_GAME_ID)


async def test_a_message_without_a_session_or_with_an_unknown_one_is_refused(
    client: Client, broker: RecordingBroker
) -> None:
    [entry] = await client.entries(redeem())
    assert reason(entry) == (403, R.NO_SESSION)
    client.session = "no-such-session"
    [entry] = await client.entries(redeem())
    assert reason(entry) == (403, R.NO_SESSION)
    assert broker.published == []


async def test_a_session_expires_after_its_time_without_packets_and_heartbeats_keep_it(
    client: Client, clock: Clock
) -> None:
    await client.authenticate()
    clock.now += timedelta(seconds=500)
    assert (await client.entries(HEARTBEAT)) == [{"status": 200, "data": None}]
    clock.now += timedelta(seconds=500)  # 1,000 s after authenticating, 500 after the heartbeat
    assert (await client.entries(HEARTBEAT)) == [{"status": 200, "data": None}]
    clock.now += timedelta(seconds=601)
    [entry] = await client.entries(HEARTBEAT)
    assert reason(entry) == (403, R.PLAYER_SESSION_EXPIRED)


async def test_a_redemption_is_the_profiles_and_named_by_its_session_and_packet(
    client: Client, broker: RecordingBroker
) -> None:
    profile = (await client.authenticate())["profileId"]
    [entry] = await client.entries(redeem("GIFT-1", customRedemptionInfo={"shop": "eu"}))
    assert reason(entry) == (400, R.REDEMPTION_IN_PROGRESS)  # no worker here to end it
    [published] = broker.published
    job = json.loads(published.body)
    assert job["userId"] == profile and job["scanCode"] == "GIFT-1"
    assert job["codeType"] == "gems" and job["customRedemptionInfo"] == {"shop": "eu"}
    assert job["requestId"].startswith("bc:") and job["requestId"].endswith(":0")
    assert job["keyId"] == f"app:{APP}"
    await client.entries(redeem("GIFT-1"), redeem("GIFT-2"))
    names = {json.loads(p.body)["requestId"] for p in broker.published}
    assert len(names) == 3, "another packet, or another place in one, is another redemption"


async def test_a_packet_sent_again_is_answered_again_and_carried_out_once(
    client: Client, broker: RecordingBroker
) -> None:
    await client.authenticate()
    body = json.dumps(
        {"messages": [redeem()], "gameId": APP, "sessionId": client.session, "packetId": 1}
    ).encode()
    first = await client.send(body=body)
    again = await client.send(body=body)
    assert again.json() == first.json()
    assert len(broker.published) == 1


async def test_the_same_packet_id_in_another_session_is_another_packet(
    client: Client, broker: RecordingBroker
) -> None:
    await client.authenticate("anon-1")
    client.packet_id = 5
    await client.entries(redeem())
    await client.authenticate("anon-2")
    client.packet_id = 5
    await client.entries(redeem())
    assert len(broker.published) == 2


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"{not json", R.JSON_PARSING_ERROR),
        (b"\xff\xfe", R.JSON_PARSING_ERROR),
        (b"[1, 2]", R.INVALID_REQUEST),
        (b'{"messages": [], "packetId": 0}', R.INVALID_REQUEST),
        (b'{"messages": "x", "packetId": 0}', R.INVALID_REQUEST),
        (
            b'{"messages": [{"service": "heartbeat", "operation": "READ"}], "packetId": "7"}',
            R.INVALID_REQUEST,
        ),
        (json.dumps({"messages": [HEARTBEAT] * 51, "packetId": 0}).encode(), R.MESSAGE_TOO_LARGE),
        (b'{"messages": [' + b"1," * 200_000 + b"1]}", R.MESSAGE_TOO_LARGE),
    ],
)
async def test_a_packet_that_is_none_is_answered_with_its_refusal_in_a_200(
    client: Client, broker: RecordingBroker, body: bytes, expected: ReasonCode
) -> None:
    answer = await client.send(body=body)
    assert answer.status_code == 200
    entries = answer.json()["responses"]
    assert entries and all(e["reason_code"] == expected and e["status_message"] for e in entries)
    assert broker.published == []


async def test_a_packet_refused_whole_is_answered_for_each_of_its_messages_with_its_id(
    client: Client,
) -> None:
    body = json.dumps({"messages": [HEARTBEAT] * 51, "packetId": 4}).encode()
    answer = (await client.send(body=body)).json()
    assert answer["packetId"] == 4 and len(answer["responses"]) == 51


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"service": "nope", "operation": "READ"}, R.INVALID_SERVICE_CODE),
        ({"service": "redemptionCode", "operation": "NOPE"}, R.INVALID_OPERATION),
        ({"service": "redemptionCode"}, R.INVALID_REQUEST),
        (
            {"service": "redemptionCode", "operation": "REDEEM_CODE", "data": []},
            R.INVALID_PARAMETER_TYPE,
        ),
        (
            {"service": "redemptionCode", "operation": "REDEEM_CODE", "data": {}},
            R.MISSING_REQUIRED_PARAMETER,
        ),
        ({**redeem(), "data": {"scanCode": 7}}, R.INVALID_PARAMETER_TYPE),
        (redeem("X", customRedemptionInfo=[1]), R.INVALID_PARAMETER_TYPE),
        (redeem("X" * 129), R.INVALID_PARAMETER_VALUE),
        (redeem("X", codeType={"a": 1}), R.INVALID_PARAMETER_TYPE),
        (
            {"service": "redemptionCode", "operation": "PROCESS_ASYNCHRONOUS_RESPONSE", "data": {}},
            R.INSUFFICIENT_PERMISSIONS,
        ),
        (auth(authenticationType="Facebook", externalId="x"), R.INVALID_AUTHENTICATION_TYPE),
        (auth(authenticationType="Anonymous"), R.MISSING_REQUIRED_PARAMETER),
        (
            auth(authenticationType="Anonymous", externalId="a\x00b", forceCreate=True),
            R.INVALID_PARAMETER_VALUE,
        ),
        (
            auth(authenticationType="Universal", externalId="bob", forceCreate=True),
            R.MISSING_REQUIRED_PARAMETER,
        ),
    ],
)
async def test_a_bad_message_gets_its_refusal_in_its_place_and_the_others_are_answered(
    client: Client, broker: RecordingBroker, message: dict[str, Any], expected: ReasonCode
) -> None:
    await client.authenticate()
    entries = await client.entries(HEARTBEAT, message, HEARTBEAT)
    assert entries[0] == entries[2] == {"status": 200, "data": None}
    assert entries[1]["reason_code"] == expected and entries[1]["status"] == 400
    assert broker.published == []


async def test_a_packet_that_authenticates_gives_its_later_messages_the_session(
    client: Client, broker: RecordingBroker
) -> None:
    entries = await client.entries(
        auth(authenticationType="Anonymous", externalId="anon-9", forceCreate=True), redeem()
    )
    assert entries[0]["status"] == 200
    assert entries[1]["reason_code"] == R.REDEMPTION_IN_PROGRESS
    assert json.loads(broker.published[0].body)["userId"] == entries[0]["data"]["profileId"]


async def test_a_packet_that_authenticates_and_redeems_sent_again_is_one_redemption(
    client: Client, broker: RecordingBroker
) -> None:
    packet = {
        "messages": [
            auth(authenticationType="Anonymous", externalId="anon-5", forceCreate=True),
            redeem(),
        ],
        "gameId": APP,
        "sessionId": "",
        "packetId": 0,
    }
    body = json.dumps(packet).encode()
    first = (await client.send(body=body)).json()["responses"]
    again = (await client.send(body=body)).json()["responses"]
    assert first[0]["data"]["sessionId"] != again[0]["data"]["sessionId"]
    jobs = [json.loads(p.body) for p in broker.published]
    assert len(jobs) == 2 and jobs[0]["redemptionId"] == jobs[1]["redemptionId"]


async def test_a_signature_of_any_text_is_refused_in_a_200(client: Client) -> None:
    body = json.dumps({"messages": [HEARTBEAT], "gameId": APP, "sessionId": "", "packetId": 0})
    answer = await client.http.post(
        "/dispatcherv2", content=body, headers={b"X-SIG": "été".encode(), b"X-APPID": APP.encode()}
    )
    assert answer.status_code == 200
    assert reason(answer.json()["responses"][0]) == (403, R.BAD_SIGNATURE)


async def test_a_lone_surrogate_echoed_in_a_refusal_is_answered_as_json(client: Client) -> None:
    await client.authenticate()
    answer = await client.send({"service": "\ud800", "operation": "READ"})
    assert answer.status_code == 200
    [entry] = answer.json()["responses"]
    assert entry["reason_code"] == R.INVALID_SERVICE_CODE


async def test_a_session_of_one_app_is_none_of_another(
    client: Client, store: FakeStore, broker: RecordingBroker, clock: Clock
) -> None:
    await client.authenticate()
    other = Session("s-other", "other-app", clock.now + timedelta(hours=1), profile_id="p")
    await store.open_session(other)
    server = Session("s-server", APP, clock.now + timedelta(hours=1), server_name="srv")
    await store.open_session(server)
    for session_id in ("s-other", "s-server"):
        client.session = session_id
        [entry] = await client.entries(redeem())
        assert reason(entry) == (403, R.NO_SESSION)
    assert broker.published == []


class FailingStore(FakeStore):
    async def get_session(self, session_id: str) -> Session | None:
        raise ConnectionError("the store is down")


async def test_a_fault_of_the_store_is_answered_in_a_200_for_each_message(
    broker: RecordingBroker,
) -> None:
    settings = Settings(api_keys="admin-key=admin", braincloud_apps=f"{APP}={SECRET}")
    async with intake_client(FailingStore(), broker, settings, lambda: NOW) as (http, _):
        client = Client(http)
        client.session = "any"
        answer = await client.send(HEARTBEAT, HEARTBEAT)
    assert answer.status_code == 200
    assert [reason(e) for e in answer.json()["responses"]] == [(503, R.SERVICE_UNAVAILABLE)] * 2


async def test_browser_clients_of_the_origins_given_may_call_the_door_and_no_other_route(
    broker: RecordingBroker,
) -> None:
    settings = Settings(
        api_keys="admin-key=admin",
        braincloud_apps=f"{APP}={SECRET}",
        braincloud_cors_origins="https://game.example",
    )
    preflight = {
        "Origin": "https://game.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-sig,x-appid",
    }
    async with intake_client(FakeStore(), broker, settings, lambda: NOW) as (http, _):
        door = await http.options("/dispatcherv2", headers=preflight)
        other = await http.options(
            "/dispatcherv2", headers={**preflight, "Origin": "https://x.example"}
        )
        api = await http.options("/v1/redemptions", headers=preflight)
    assert door.status_code == 200
    assert door.headers["access-control-allow-origin"] == "https://game.example"
    assert other.status_code == 400 and "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in api.headers
