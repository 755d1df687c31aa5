"""A user id holds printable characters only: one with a control (or other invisible)
character is refused with 40660, over HTTP and over AMQP alike."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import cast

import httpx
import pytest

from services.intake.bootstrap import bootstrap
from shared import topology
from shared.adapters.rabbitmq import Broker
from shared.domain.identifiers import printable
from shared.runtime.settings import Settings
from tests.fake_broker import FakeBroker
from tests.fakes import FakeStore
from tests.unit.intake_harness import RecordingBroker

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
REDEEMER = {"Authorization": "Bearer redeem-key"}
SETTINGS = Settings(
    api_keys="redeem-key=redeem", context_secret="secret", redemption_id_secret="secret"
)
UNPRINTABLE = {
    "nul": "u\x001",
    "newline": "alice\nINFO forged log line",
    "carriage return": "alice\r",
    "escape": "\x1b[31malice",
    "delete": "alice\x7f",
    "right-to-left override": "alice\u202etxt.exe",
    "zero-width space": "al\u200bice",
    "no-break space": "alice\u00a0",
    "line separator": "alice\u2028",
}
PRINTABLE = ["alice", "user 42", "Zoë", "ユーザー", "a=b+c@d", "🎁"]


def test_printable_text_passes_and_any_other_is_refused() -> None:
    for user in PRINTABLE:
        assert printable(user) == user
    for user in UNPRINTABLE.values():
        with pytest.raises(ValueError, match="printable"):
            printable(user)


@pytest.fixture
def settings() -> Settings:
    return SETTINGS


@pytest.mark.parametrize("user", UNPRINTABLE.values(), ids=UNPRINTABLE.keys())
async def test_a_user_id_with_an_unprintable_character_is_refused_over_http(
    api: httpx.AsyncClient, broker: RecordingBroker, user: str
) -> None:
    answer = await api.post(
        "/v1/redemptions", json={"userId": user, "scanCode": "ABC"}, headers=REDEEMER
    )
    assert (answer.status_code, answer.json()["reasonCode"]) == (422, 40660)
    assert "userId" in answer.json()["message"]
    assert broker.published == []


@pytest.mark.parametrize("user", PRINTABLE)
async def test_a_printable_user_id_is_taken_over_http(
    api: httpx.AsyncClient, broker: RecordingBroker, user: str
) -> None:
    answer = await api.post(
        "/v1/redemptions", json={"userId": user, "scanCode": "ABC"}, headers=REDEEMER
    )
    assert answer.status_code == 202, answer.text
    assert len(broker.published) == 1


@pytest.fixture
async def amqp() -> AsyncIterator[FakeBroker]:
    broker = FakeBroker()
    intake = bootstrap(FakeStore(), cast(Broker, broker), SETTINGS, clock=lambda: NOW)
    await intake.commands.start()
    yield broker
    await intake.commands.stop()


@pytest.mark.parametrize("user", UNPRINTABLE.values(), ids=UNPRINTABLE.keys())
async def test_a_user_id_with_an_unprintable_character_is_refused_over_amqp(
    amqp: FakeBroker, user: str
) -> None:
    command = json.dumps({"userId": user, "scanCode": "ABC"}).encode()
    delivery = await amqp.deliver(
        topology.INTAKE_QUEUE, command, reply_to="caller", correlation_id="c1"
    )
    assert delivery.settled == "dead-letter"
    [reply] = [json.loads(m.body) for m in amqp.on("") if m.routing_key == "caller"]
    assert (reply["status"], reply["reasonCode"]) == (422, 40660)
    assert "userId" in reply["message"]
    assert amqp.on(topology.WORK_EXCHANGE) == []
