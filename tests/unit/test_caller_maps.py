"""Callers' free-form maps are bounded where they come in: HTTP, AMQP commands, imports."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from services.intake.bulk import Importer
from shared.domain import jsonmaps
from shared.domain.reasons import DomainError, ReasonCode
from shared.messages import AsyncResponseCommand, RedeemCommand, parse
from shared.runtime.settings import Settings
from tests.fakes import FakeStore
from tests.unit.intake_harness import RecordingBroker, intake_client

ADMIN = {"Authorization": "Bearer admin-key", "Content-Type": "application/json"}
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def nested(depth: int) -> dict[str, Any]:
    """A map `depth` levels deep."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"$down": value}
    return value


def many_keys(count: int) -> dict[str, Any]:
    return {f"k{n}": n for n in range(count)}


WITHIN = {
    "deepest": nested(jsonmaps.MAX_DEPTH),
    "most keys": many_keys(jsonmaps.MAX_KEYS),
    "largest": {"text": "x" * (jsonmaps.MAX_BYTES - len('{"text":""}'))},
    "extremes": {"big": 2**63 - 1, "small": -(2**63), "float": 1e20, "$date": 1e17},
}
BEYOND = {
    "too deep": (nested(jsonmaps.MAX_DEPTH + 1), "nested deeper than 32 levels"),
    "too many keys": (many_keys(jsonmaps.MAX_KEYS + 1), "more than 256 keys"),
    "too large": ({"text": "x" * jsonmaps.MAX_BYTES}, "larger than 16384 bytes"),
    "too big an integer": ({"n": 2**63}, "integer outside"),
    "NaN": ({"n": float("nan")}, "not finite"),
    "infinity": ({"n": [float("-inf")]}, "not finite"),
    "a lone surrogate": ({"\ud800": 1}, "not valid Unicode"),
}


@pytest.mark.parametrize("value", WITHIN.values(), ids=WITHIN.keys())
def test_maps_within_the_bounds_are_accepted_as_they_are(value: dict[str, Any]) -> None:
    assert jsonmaps.checked(value) == value


@pytest.mark.parametrize(("value", "why"), BEYOND.values(), ids=BEYOND.keys())
def test_maps_beyond_the_bounds_are_refused_saying_why(value: Any, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        jsonmaps.checked(value)


def body(value: Any) -> bytes:
    """`value` as JSON, NaN and infinities included (as Python's parser reads them)."""
    return json.dumps(value).encode()


@pytest.fixture
async def intake() -> AsyncIterator[httpx.AsyncClient]:
    """The intake's HTTP API over fakes: these requests are refused before any route runs."""
    broker = RecordingBroker()
    settings = Settings(api_keys="admin-key=admin")
    async with intake_client(FakeStore(), broker, settings) as (client, _):
        yield client
    assert broker.published == [], "a refused request publishes nothing"


CODES = "/v1/campaigns/gems/codes"
ROUTES: dict[str, tuple[str, str, dict[str, Any], str]] = {
    "redeem": ("POST", "/v1/redemptions", {"userId": "u", "scanCode": "A"}, "customRedemptionInfo"),
    "create a campaign": ("POST", "/v1/campaigns", {"codeType": "gems"}, "customCodeInfo"),
    "change a campaign": ("PATCH", "/v1/campaigns/gems", {"version": 1}, "customCodeInfo"),
    "add a code": ("POST", CODES, {"scanCode": "A1"}, "customCodeInfo"),
    "activate a code": ("POST", f"{CODES}/A1/activate", {}, "customCodeInfo"),
    "update custom info": ("PATCH", f"{CODES}/A1", {"version": 1}, "customCodeInfo"),
    "generate codes": ("POST", f"{CODES}/generate", {"quantity": 1}, "customCodeInfo"),
    "generate with details": ("POST", f"{CODES}/generate", {"quantity": 1}, "algorithmDetailsJson"),
    "answer": ("POST", "/v1/redemptions/r1/async-response", {"attempt": 0}, "asyncResponse"),
}


@pytest.mark.parametrize(("value", "why"), BEYOND.values(), ids=BEYOND.keys())
async def test_the_intake_refuses_a_map_beyond_the_bounds(
    intake: httpx.AsyncClient, value: Any, why: str
) -> None:
    method, path, fields, name = ROUTES["redeem"]
    answer = await intake.request(method, path, content=body(fields | {name: value}), headers=ADMIN)
    assert answer.status_code == 422
    refusal = answer.json()
    assert refusal["reasonCode"] == ReasonCode.INVALID_PARAMETER_VALUE
    assert name in refusal["message"] and why in refusal["message"]


@pytest.mark.parametrize("route", ROUTES.values(), ids=ROUTES.keys())
async def test_every_map_the_intake_takes_is_bounded(
    intake: httpx.AsyncClient, route: tuple[str, str, dict[str, Any], str]
) -> None:
    method, path, fields, name = route
    deep = nested(jsonmaps.MAX_DEPTH + 1)
    answer = await intake.request(method, path, content=body(fields | {name: deep}), headers=ADMIN)
    assert answer.status_code == 422, answer.text
    assert answer.json()["reasonCode"] == ReasonCode.INVALID_PARAMETER_VALUE
    assert name in answer.json()["message"]


@pytest.mark.parametrize("value", [value for value, _ in BEYOND.values()], ids=BEYOND.keys())
def test_an_amqp_command_with_a_map_beyond_the_bounds_is_refused(value: Any) -> None:
    redeem = {"userId": "u1", "scanCode": "A1", "customRedemptionInfo": value}
    answer = {"redemptionId": "r1", "attempt": 0, "asyncResponse": {"customRedemptionInfo": value}}
    for model, command in ((RedeemCommand, redeem), (AsyncResponseCommand, answer)):
        with pytest.raises(DomainError) as refused:
            parse(model, body(command))
        assert refused.value.reason is ReasonCode.INVALID_PARAMETER_VALUE


async def test_an_imported_line_with_a_map_beyond_the_bounds_is_refused() -> None:
    lines = [
        {"scanCode": "OK1", "customCodeInfo": WITHIN["extremes"]},
        {"scanCode": "DEEP1", "customCodeInfo": nested(jsonmaps.MAX_DEPTH + 1)},
        {"scanCode": "NAN1", "customCodeInfo": {"n": float("nan")}},
    ]
    store = FakeStore()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"\n".join(body(line) for line in lines)

    report = await Importer(store, lambda: NOW).run("gems", "ndjson", chunks())
    assert (report.added, report.rejected) == (1, 2)
    assert [(e.line, e.reasonCode) for e in report.errors] == [
        (2, ReasonCode.INVALID_PARAMETER_VALUE),
        (3, ReasonCode.INVALID_PARAMETER_VALUE),
    ]
    assert "nested deeper" in report.errors[0].reason
