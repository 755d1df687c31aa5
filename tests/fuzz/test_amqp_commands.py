"""Hostile `redeem` and `async-response` commands sent to the running system, on each
store: every one is dead-lettered with its reason code (and the refusal sent to its
`reply_to`), nothing is written for any of them, and a valid redemption sent after
them still ends Redeemed.

The commands are a fixed corpus (not JSON, JSON that is no object, oversized, wrongly
typed fields, values out of bounds) and wrongly typed commands that Hypothesis
generates: a valid command with one field given a value of a type it cannot take.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aio_pika.abc import AbstractIncomingMessage
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bench.support.processes import PARTNER_KEY, System
from shared import topology
from shared.adapters.rabbitmq import Broker
from shared.domain.reasons import ReasonCode
from shared.messages import MAX_BODY_BYTES
from tests.support.amqp import Tap, ask
from tests.support.api import Api

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
R = ReasonCode
REDEEM, ASYNC_RESPONSE = topology.REDEEM_ROUTING_KEY, topology.ASYNC_RESPONSE_ROUTING_KEY
AS_PARTNER = {topology.AUTHORIZATION_HEADER: f"Bearer {PARTNER_KEY}"}
GENERATED = 40  # wrongly typed commands of each kind
WAIT_S = 60.0  # a guard only: a dead letter comes within a second when all is well


@dataclass(frozen=True)
class Hostile:
    """A command no consumer may act on, and the reason it must be dead-lettered with."""

    what: str
    routing_key: str
    body: bytes
    reason: ReasonCode = R.INVALID_PARAMETER_VALUE
    headers: dict[str, Any] = field(default_factory=dict)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _redeem(**fields: Any) -> bytes:
    return _json({"userId": "mallory", "scanCode": "GEMS-1", "codeType": "gems", **fields})


def _answer(**fields: Any) -> bytes:
    base = {"redemptionId": "r-1", "attempt": 0, "asyncResponse": {"success": True}}
    return _json({**base, **fields})


def _without(body: bytes, name: str) -> bytes:
    return _json({k: v for k, v in json.loads(body).items() if k != name})


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


NOT_JSON = [
    b"",
    b"redeem GEMS-1 please",
    b'{"userId": "mallory", "scanCode": "GEMS-1"',
    b"{'userId': 'mallory', 'scanCode': 'GEMS-1'}",
    b"\xff\xfe\x00\x01\x80",
    b'{"userId": "mallory\\ud800", "scanCode": "GEMS-1"}',
    b'{"userId": "mallory", "scanCode": "GEMS-1", "customRedemptionInfo": {"n": NaN}}',
    b"\x00" * 32,
]
NOT_OBJECTS = [b"null", b"true", b"42", b'"GEMS-1"', b"[]", b"[" + _redeem() + b"]"]
PADDING = "x" * MAX_BODY_BYTES


def corpus() -> list[Hostile]:
    """The fixed corpus, for both kinds of command."""
    hostile = [
        Hostile(f"not JSON: {body[:20]!r}", key, body)
        for key in (REDEEM, ASYNC_RESPONSE)
        for body in NOT_JSON
    ]
    hostile += [
        Hostile(f"not an object: {body[:20]!r}", key, body)
        for key in (REDEEM, ASYNC_RESPONSE)
        for body in NOT_OBJECTS
    ]
    hostile += [
        Hostile("oversized redeem", REDEEM, _redeem(customRedemptionInfo={"pad": PADDING})),
        Hostile("oversized async-response", ASYNC_RESPONSE, _answer(asyncResponse=PADDING)),
        Hostile("a mebibyte", REDEEM, b"[" + b"0," * (512 * 1024) + b"0]"),
        Hostile(
            "delivery count not a count",
            REDEEM,
            b"{",
            headers={topology.DELIVERIES_HEADER: "many", "x-delivery-count": -3},
        ),
        Hostile("reply_to a queue that is not there", REDEEM, b"nothing", headers={}),
    ]
    return hostile + _wrongly_typed_redeems() + _wrongly_typed_answers()


def _wrongly_typed_redeems() -> list[Hostile]:
    invalid = {
        "userId a number": _redeem(userId=7),
        "userId a list": _redeem(userId=["mallory"]),
        "userId null": _redeem(userId=None),
        "no userId": _without(_redeem(), "userId"),
        "userId empty": _redeem(userId=""),
        "userId too long": _redeem(userId="u" * 129),
        "userId with a bell": _redeem(userId="mallory\a"),
        "no scanCode": _without(_redeem(), "scanCode"),
        "scanCode an object": _redeem(scanCode={"code": "GEMS-1"}),
        "scanCode too long": _redeem(scanCode="G" * 129),
        "codeType a number": _redeem(codeType=5),
        "requestId a bool": _redeem(requestId=True),
        "info a string": _redeem(customRedemptionInfo="info"),
        "info a list": _redeem(customRedemptionInfo=[1, 2]),
        "info too deep": _redeem(customRedemptionInfo=_nested(40)),
        "info beyond 64 bits": _redeem(customRedemptionInfo={"n": 2**64}),
        "schemaVersion 2": _redeem(schemaVersion=2),
    }
    no_code = {
        "scanCode of symbols": (_redeem(scanCode="!!!"), R.INVALID_SCAN_CODE),
        "scanCode of spaces": (_redeem(scanCode="  - "), R.INVALID_SCAN_CODE),
        "scanCode past 64": (_redeem(scanCode="G" * 65), R.INVALID_SCAN_CODE_LENGTH),
    }
    return [Hostile(what, REDEEM, body) for what, body in invalid.items()] + [
        Hostile(what, REDEEM, body, reason) for what, (body, reason) in no_code.items()
    ]


def _wrongly_typed_answers() -> list[Hostile]:
    cases = {
        "redemptionId a number": _answer(redemptionId=5),
        "no redemptionId": _without(_answer(), "redemptionId"),
        "redemptionId empty": _answer(redemptionId=""),
        "redemptionId too long": _answer(redemptionId="r" * 129),
        "no attempt": _without(_answer(), "attempt"),
        "attempt a word": _answer(attempt="first"),
        "attempt negative": _answer(attempt=-1),
        "attempt a fraction": _answer(attempt=1.5),
        "attempt a list": _answer(attempt=[0]),
        "attempt a bool": _answer(attempt=True),
        "attempt numeric text": _answer(attempt="0"),
        "attempt 0.0": _answer(attempt=0.0),
        "no asyncResponse": _without(_answer(), "asyncResponse"),
        "asyncResponse too deep": _answer(asyncResponse=_nested(40)),
        "asyncResponse beyond 64 bits": _answer(asyncResponse={"n": -(2**70)}),
        "scanCode a number": _answer(scanCode=7),
        "codeType an object": _answer(codeType={}),
        "schemaVersion 0": _answer(schemaVersion=0),
    }
    return [Hostile(what, ASYNC_RESPONSE, body) for what, body in cases.items()]


SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
NOT_TEXT = JSON_VALUES.filter(lambda v: not isinstance(v, str))
# What no field of each type takes (null where the field is required): commands are
# read strictly, so `true`, `1.0` or `"1"` is no attempt.
WRONG = {
    "text": NOT_TEXT,
    "optional text": NOT_TEXT.filter(lambda v: v is not None),
    "optional map": (SCALARS | st.lists(JSON_VALUES, max_size=3)).filter(lambda v: v is not None),
    "count": JSON_VALUES.filter(lambda v: not isinstance(v, int) or isinstance(v, bool) or v < 0),
}
FIELDS = {
    REDEEM: {
        "userId": "text",
        "scanCode": "text",
        "codeType": "optional text",
        "requestId": "optional text",
        "customRedemptionInfo": "optional map",
    },
    ASYNC_RESPONSE: {
        "redemptionId": "text",
        "attempt": "count",
        "scanCode": "optional text",
        "redemptionCodeId": "optional text",
        "codeType": "optional text",
    },
}


def generated(routing_key: str, n: int) -> list[Hostile]:
    """`n` valid commands of the kind, each with one field of a type it cannot take."""
    base = json.loads(_redeem() if routing_key == REDEEM else _answer())
    fields = FIELDS[routing_key]
    wrong = st.sampled_from(sorted(fields)).flatmap(
        lambda name: st.tuples(st.just(name), WRONG[fields[name]])
    )
    found: list[Hostile] = []

    @settings(
        max_examples=n,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(wrong)
    def collect(name_value: tuple[str, Any]) -> None:
        name, value = name_value
        body = _json({**base, name: value})
        found.append(Hostile(f"{name}={value!r:.40}", routing_key, body))

    collect()
    return found


@pytest.fixture
async def api(any_system: System) -> AsyncIterator[Api]:
    client = Api(any_system.services[0].url)
    await client.campaign("gems")
    await client.code("gems", "GEMS-1")
    yield client
    await client.close()


async def test_hostile_commands_are_dead_lettered_with_their_reason_and_change_nothing(
    api: Api, broker: Broker, any_system: System
) -> None:
    hostile = corpus() + generated(REDEEM, GENERATED) + generated(ASYNC_RESPONSE, GENERATED)
    dead = await Tap.on(broker, topology.DEAD_LETTER_EXCHANGE)
    replies = await Tap.on(broker, None)
    events = await Tap.on(broker, topology.EVENTS_EXCHANGE)
    for n, message in enumerate(hostile):
        await _send(broker, message, f"hostile-{n}", replies.queue.name if n % 2 else None)

    letters = await dead.wait_for(len(hostile), timeout_s=WAIT_S)
    told = _told(hostile)
    answered = await replies.wait_for(len(told), timeout_s=WAIT_S)

    _assert_dead_lettered(hostile, letters)
    replied = {r.correlation_id: json.loads(r.body) for r in answered}
    assert {name: (replied[name]["status"], replied[name]["reasonCode"]) for name in told} == told
    assert any_system.services[0].alive
    _, outcome = await ask(broker, {"userId": "alice", "scanCode": "GEMS-1"}, "alice-1")
    assert (outcome["status"], outcome["userId"]) == ("Redeemed", "alice"), outcome
    recent = await api.http.get("/v1/redemptions", params={"limit": 500}, headers=api.admin)
    assert [r["userId"] for r in recent.json()["items"]] == ["alice"]
    lockouts = await api.http.get("/v1/lockouts", headers=api.admin)
    assert lockouts.json()["items"] == []
    await events.wait_for(2)
    assert {json.loads(m.body)["redemptionId"] for m in events.messages} == {
        outcome["redemptionId"]
    }
    assert len(dead.messages) == len(hostile)


async def test_a_well_formed_async_response_refused_is_answered_not_dead_lettered(
    api: Api, broker: Broker
) -> None:
    dead = await Tap.on(broker, topology.DEAD_LETTER_EXCHANGE)
    answer = json.loads(_answer(redemptionId="no-such-redemption", redemptionCodeId="c-1"))

    _, unknown = await ask(broker, answer, "a-1", routing_key=ASYNC_RESPONSE, headers=AS_PARTNER)
    _, keyless = await ask(broker, answer, "a-2", routing_key=ASYNC_RESPONSE)

    assert (unknown["status"], unknown["reasonCode"]) == (404, R.REDEMPTION_CODE_BY_ID_NOT_FOUND)
    assert (keyless["status"], keyless["reasonCode"]) == (401, R.UNAUTHENTICATED)
    _, outcome = await ask(broker, {"userId": "alice", "scanCode": "GEMS-1"}, "alice-1")
    assert outcome["status"] == "Redeemed"
    assert dead.messages == []


async def _send(broker: Broker, message: Hostile, name: str, reply_to: str | None) -> None:
    if message.what.startswith("reply_to"):
        reply_to = "no-such-queue"
    await broker.publish(
        topology.COMMANDS_EXCHANGE,
        message.routing_key,
        message.body,
        message_id=name,
        correlation_id=name,
        reply_to=reply_to,
        headers=message.headers,
    )


def _assert_dead_lettered(hostile: list[Hostile], letters: list[AbstractIncomingMessage]) -> None:
    """Each hostile command dead-lettered once, with its reason code and reason."""
    reasons: dict[str, list[tuple[int, str]]] = {}
    for letter in letters:
        headers = letter.headers or {}
        code = str(headers[topology.DEAD_LETTER_REASON_CODE_HEADER])
        text = str(headers[topology.DEAD_LETTER_REASON_HEADER])
        reasons.setdefault(str(letter.message_id), []).append((int(code), text))
    wrong = {}
    for n, message in enumerate(hostile):
        expected = message.reason
        found = reasons.get(f"hostile-{n}", [])
        if [code for code, _ in found] != [expected] or not found[0][1].startswith(
            f"{int(expected)} {expected.name}: "
        ):
            wrong[message.what] = found
    assert not wrong, wrong


def _told(hostile: list[Hostile]) -> dict[str, tuple[int, int]]:
    """What each hostile command sent with a reply queue must be told: 422 and its reason."""
    return {
        f"hostile-{n}": (422, int(m.reason))
        for n, m in enumerate(hostile)
        if n % 2 and not m.what.startswith("reply_to")
    }
