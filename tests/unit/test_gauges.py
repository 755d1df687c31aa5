"""The backlogs `results` samples: what waits in the outboxes and since when, timers
set and due, and the messages waiting in the work and dead-letter queues."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from services.results.gauges import Gauges
from shared import topology
from shared.domain import model
from shared.domain.model import Campaign, Claim, Code, CodeRef, CodeUseType
from shared.domain.states import CodeState
from tests.fake_broker import FakeBroker, Message
from tests.fakes import FakeStore

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def gauge(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


async def test_a_sample_sets_each_backlog_as_it_stands() -> None:
    store, broker = FakeStore(), FakeBroker()
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    for n, due_s in enumerate((-5, 60)):
        await store.add_code(Code(f"c{n}", "gems", f"A{n}", CodeState.AVAILABLE, NOW, NOW))
        fields = {"timer_at": NOW + timedelta(seconds=due_s)}
        claim = model.claim(Claim(f"r{n}", "u"), now=NOW, new_id=lambda: "e", attempt_fields=fields)
        await store.apply(CodeRef("gems", f"A{n}"), [claim])
    for queue, count in ((topology.WORK_QUEUE, 3), (topology.DEAD_LETTER_QUEUE, 1)):
        broker.ready += [(queue, Message("", queue, b"{}"))] * count
    later = NOW + timedelta(seconds=90)

    await Gauges(store, broker, lambda: later, every_s=1).sample()

    assert gauge("redemption_outbox_events") == 2
    assert gauge("redemption_outbox_oldest_age_seconds") == 90
    assert (gauge("redemption_timers", state="set"), gauge("redemption_timers", state="due")) == (
        2,
        2,
    )
    assert gauge("redemption_queue_messages", queue=topology.WORK_QUEUE) == 3
    assert gauge("redemption_queue_messages", queue=topology.DEAD_LETTER_QUEUE) == 1

    await store.mark_relayed(await store.pending_events(limit=10))
    await Gauges(store, FakeBroker(), lambda: NOW, every_s=1).sample()

    assert gauge("redemption_outbox_events") == 0
    assert gauge("redemption_outbox_oldest_age_seconds") == 0
    assert (gauge("redemption_timers", state="set"), gauge("redemption_timers", state="due")) == (
        2,
        1,
    )
    assert gauge("redemption_queue_messages", queue=topology.WORK_QUEUE) == 0
