"""What a request must pass before its body is read: the caller's key for the route, then
the body's size limit; and an import stopped by its size says how far it got."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.intake.app import create_app
from services.intake.braincloud.packets import MAX_PACKET_BYTES
from shared.domain.reasons import ReasonCode
from shared.messages import MAX_BODY_BYTES
from shared.runtime.settings import Settings
from tests.fakes import FakeStore
from tests.unit.intake_harness import RecordingBroker, intake_client

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
KEYS = {"admin": "admin-key", "redeem": "redeem-key", "fulfillment": "partner-key"}
# A key that does not hold each role (admin holds them all).
WRONG_KEY = {"admin": "redeem-key", "redeem": "partner-key", "fulfillment": "redeem-key"}
SETTINGS = Settings(
    api_keys="admin-key=admin;redeem-key=redeem;partner-key=fulfillment",
    context_secret="secret",
    max_import_bytes=10_000,
)
ADMIN = {"Authorization": "Bearer admin-key"}
PATH_PARAMS = {"codeType": "gems", "scanCode": "ABC", "redemptionId": "r1"}
# Every route that takes a body, and the role it requires.
BODY_ROUTES = [
    ("POST", "/v1/campaigns", "admin"),
    ("PATCH", "/v1/campaigns/{codeType}", "admin"),
    ("POST", "/v1/campaigns/{codeType}/codes", "admin"),
    ("POST", "/v1/campaigns/{codeType}/codes/generate", "admin"),
    ("POST", "/v1/campaigns/{codeType}/codes/import", "admin"),
    ("POST", "/v1/campaigns/{codeType}/codes/reset", "admin"),
    ("PATCH", "/v1/campaigns/{codeType}/codes/{scanCode}", "admin"),
    ("POST", "/v1/campaigns/{codeType}/codes/{scanCode}/activate", "admin"),
    ("POST", "/v1/campaigns/{codeType}/codes/{scanCode}/invalidate", "admin"),
    ("POST", "/v1/redemptions", "redeem"),
    ("POST", "/v1/redemptions/{redemptionId}/async-response", "fulfillment"),
]
# The brainCloud front door's: a packet's signature is in its body's bytes, so the body
# is read, to the route's own limit, before the caller is known.
SIGNED_ROUTES = [("POST", "/dispatcherv2"), ("POST", "/s2sdispatcher")]
CASES = [(m, p.format(**PATH_PARAMS), role) for m, p, role in BODY_ROUTES] + [
    # Not the import: UpdateCustomInfo of a code named "import", whose body is buffered.
    ("PATCH", "/v1/campaigns/gems/codes/import", "admin"),
]
CHUNK = 64 * 1024


class Upload:
    """A streamed request body of `size` bytes that counts how much of it was read."""

    def __init__(self, size: int, line: bytes = b" " * 63 + b"\n") -> None:
        self.size = size
        self.line = line
        self.read = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        per_chunk = max(1, CHUNK // len(self.line))
        while self.read < self.size:
            chunk = self.line * per_chunk
            self.read += len(chunk)
            yield chunk


@pytest.fixture
def settings() -> Settings:
    return SETTINGS


def no_adapters(*_: object) -> Any:
    raise AssertionError("not connected")


def test_the_cases_cover_every_route_that_takes_a_body() -> None:
    app = create_app(SETTINGS, no_adapters)
    taking = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if method in ("post", "put", "patch")
    }
    assert taking == {(m, p) for m, p, _ in BODY_ROUTES} | set(SIGNED_ROUTES)


@pytest.mark.parametrize(("method", "path"), SIGNED_ROUTES)
async def test_a_signed_route_reads_no_more_than_its_limit_of_an_unsigned_body(
    api: httpx.AsyncClient, method: str, path: str
) -> None:
    upload = Upload(4 * 1024 * 1024)
    answer = await api.request(method, path, content=upload.chunks())
    assert answer.status_code == 200  # as brainCloud's libraries need: the refusal inside
    answer_body = answer.json()
    [entry] = answer_body.get("responses") or answer_body["messageResponses"]
    assert entry["reason_code"] == ReasonCode.MESSAGE_TOO_LARGE
    assert upload.read <= MAX_PACKET_BYTES + CHUNK


@pytest.mark.parametrize(("method", "path", "role"), CASES)
async def test_a_caller_without_a_key_is_refused_before_its_body_is_read(
    api: httpx.AsyncClient, method: str, path: str, role: str
) -> None:
    upload = Upload(4 * 1024 * 1024)
    answer = await api.request(
        method, path, content=upload.chunks(), headers={"content-type": "application/json"}
    )
    assert (answer.status_code, answer.json()["reasonCode"]) == (401, ReasonCode.UNAUTHENTICATED)
    assert upload.read == 0


@pytest.mark.parametrize(("method", "path", "role"), CASES)
async def test_a_key_without_the_routes_role_is_refused_before_its_body_is_read(
    api: httpx.AsyncClient, method: str, path: str, role: str
) -> None:
    upload = Upload(4 * 1024 * 1024)
    headers = {"Authorization": f"Bearer {WRONG_KEY[role]}", "content-type": "application/json"}
    answer = await api.request(method, path, content=upload.chunks(), headers=headers)
    assert (answer.status_code, answer.json()["reasonCode"]) == (403, ReasonCode.FORBIDDEN)
    assert upload.read == 0


@pytest.mark.parametrize(("method", "path", "role"), CASES)
async def test_a_key_holding_the_routes_role_gets_past_the_check(
    api: httpx.AsyncClient, method: str, path: str, role: str
) -> None:
    headers = {"Authorization": f"Bearer {KEYS[role]}"}
    answer = await api.request(method, path, json={}, headers=headers)
    assert answer.status_code not in (401, 403), answer.text


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PATCH", "/v1/campaigns/gems/codes/import"),
        ("PUT", "/v1/campaigns/gems/codes/import"),
        ("POST", "/v1/campaigns/gems/codes/import/activate"),
        ("POST", "/v1/campaigns"),
    ],
)
async def test_only_the_import_itself_is_exempt_from_the_body_limit(
    api: httpx.AsyncClient, method: str, path: str
) -> None:
    upload = Upload(4 * 1024 * 1024)
    answer = await api.request(
        method, path, content=upload.chunks(), headers={**ADMIN, "content-type": "text/csv"}
    )
    if answer.status_code != 405:  # PUT: no such route, nothing read
        assert (answer.status_code, answer.json()["reasonCode"]) == (422, 40660)
        assert f"larger than {MAX_BODY_BYTES} bytes" in answer.json()["message"]
    assert upload.read <= MAX_BODY_BYTES + CHUNK


async def test_an_import_declared_larger_than_its_limit_is_refused_unread(
    api: httpx.AsyncClient,
) -> None:
    await api.post("/v1/campaigns", json={"codeType": "gems"}, headers=ADMIN)
    upload = Upload(20_000, b"C0000001,Available\n")
    answer = await api.post(
        "/v1/campaigns/gems/codes/import",
        content=upload.chunks(),
        headers={**ADMIN, "content-type": "text/csv", "content-length": "20000"},
    )
    assert (answer.status_code, answer.json()["reasonCode"]) == (422, 40660)
    assert "larger than 10000 bytes" in answer.json()["message"]
    assert upload.read == 0
    inventory = await api.get("/v1/campaigns/gems/inventory", headers=ADMIN)
    assert inventory.json()["total"] == 0


def inventory_lines(count: int) -> list[bytes]:
    return [b"scanCode,codeState\n"] + [f"C{n:07d},Available\n".encode() for n in range(count)]


async def test_an_import_streamed_past_its_limit_stops_at_a_line_and_says_what_it_imported(
    api: httpx.AsyncClient,
) -> None:
    await api.post("/v1/campaigns", json={"codeType": "gems"}, headers=ADMIN)
    lines = inventory_lines(1_000)  # 18 bytes a line: about 18,000 in all

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(lines), 50):
            yield b"".join(lines[start : start + 50])

    answer = await api.post(
        "/v1/campaigns/gems/codes/import",
        content=body(),
        headers={**ADMIN, "content-type": "text/csv"},
    )

    assert (answer.status_code, answer.json()["reasonCode"]) == (422, 40660), answer.text
    message = answer.json()["message"]
    assert "larger than 10000 bytes" in message
    stopped = re.search(
        r"stopped after line (\d+): the (\d+) rows up to it .*\((\d+) added", message
    )
    assert stopped, message
    last_line, rows, added = map(int, stopped.groups())
    assert rows == added == last_line - 1 and 0 < added < 1_000
    inventory = await api.get("/v1/campaigns/gems/inventory", headers=ADMIN)
    assert inventory.json()["total"] == added, "what the refusal says is what is stored"
    last_in, first_out = f"C{added - 1:07d}", f"C{added:07d}"
    assert (await api.get(f"/v1/campaigns/gems/codes/{last_in}", headers=ADMIN)).status_code == 200
    assert (
        await api.get(f"/v1/campaigns/gems/codes/{first_out}", headers=ADMIN)
    ).status_code == 404

    rest = b"".join(lines[:1] + lines[1 + added : 1 + added + 400])
    again = await api.post(
        "/v1/campaigns/gems/codes/import",
        content=rest,
        headers={**ADMIN, "content-type": "text/csv"},
    )
    assert (again.status_code, again.json()["added"]) == (200, 400)


async def test_a_line_too_long_stops_the_import_after_the_lines_before_it() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"scanCode\nA1\nBAD!\nA2\n"
        yield b"A" * (70 * 1024)
        yield b"\nA3\n"

    settings = Settings(api_keys="admin-key=admin", context_secret="s")
    async with intake_client(FakeStore(), RecordingBroker(), settings, lambda: NOW) as (
        client,
        _,
    ):
        await client.post("/v1/campaigns", json={"codeType": "gems"}, headers=ADMIN)
        answer = await client.post("/v1/campaigns/gems/codes/import", content=body(), headers=ADMIN)
        assert (answer.status_code, answer.json()["reasonCode"]) == (422, 40660)
        message = answer.json()["message"]
        assert "line 5 is longer than" in message
        assert "stopped after line 4: the 3 rows up to it were processed (2 added" in message
        assert "1 rejected" in message
        inventory = await client.get("/v1/campaigns/gems/inventory", headers=ADMIN)
        assert inventory.json()["total"] == 2
