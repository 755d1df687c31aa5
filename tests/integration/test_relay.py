"""The results relay on the real store and broker: at least once, in order, replies."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from services.results.relay import Relay
from shared import topology
from shared.adapters.mongodb import MongoStore
from shared.adapters.rabbitmq import Broker
from shared.domain import model
from shared.domain.model import (
    Campaign,
    Claim,
    Code,
    CodeRef,
    CodeUseType,
    Redemption,
    RedemptionStatus,
    ReplyTo,
)
from shared.domain.states import CodeState
from shared.ports import Store
from tests.support.amqp import Tap

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


class FlakyBroker(Broker):
    """The real broker, but the `fail_on`-th publish is never confirmed."""

    def __init__(self, real: Broker, fail_on: int) -> None:
        self.__dict__.update(real.__dict__)
        self._count = 0
        self._fail_on = fail_on

    async def publish(self, *args: Any, **kwargs: Any) -> None:
        self._count += 1
        if self._count == self._fail_on:
            raise TimeoutError("no confirm")
        await super().publish(*args, **kwargs)


async def redeem_codes(store: MongoStore, count: int) -> None:
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    for n in range(count):
        await store.add_code(Code(f"c{n}", "gems", f"CODE{n}", CodeState.AVAILABLE, NOW, NOW))
        claim = Claim(f"r{n}", f"u{n}")
        first, second = f"ev{n}-1", f"ev{n}-2"
        changes = [
            model.claim(claim, now=NOW, new_id=first.__str__),
            model.succeed(claim, None, now=NOW, new_id=second.__str__),
        ]
        await store.apply(CodeRef("gems", f"CODE{n}"), changes)


async def test_events_go_out_in_order_per_code_and_leave_the_outbox(
    store: MongoStore, broker: Broker
) -> None:
    events = await Tap.on(broker, topology.EVENTS_EXCHANGE)
    await redeem_codes(store, 3)
    relay = Relay(store, broker, batch=2, idle_s=0.01)
    assert await relay.relay_once() is True
    assert await relay.relay_once() is False
    messages = await events.wait_for(6)
    assert await store.pending_events(limit=10) == []
    by_code: dict[str, list[str]] = {}
    for message in messages:
        body = json.loads(message.body)
        assert message.message_id == body["eventId"]
        assert message.routing_key == f"code.{body['code']['codeState'].lower()}"
        by_code.setdefault(body["code"]["redemptionCodeId"], []).append(body["eventType"])
    assert by_code == {f"c{n}": ["CodeInprogress", "CodeRedeemed"] for n in range(3)}
    await events.close()


async def test_events_of_shared_code_instances_leave_their_outbox_once_relayed(
    any_store: Store, broker: Broker
) -> None:
    events = await Tap.on(broker, topology.EVENTS_EXCHANGE)
    shared = Campaign("summer", CodeUseType.MULTI, NOW, NOW, scan_code="SUMMER", max_redemptions=5)
    await any_store.create_campaign(shared)
    for n in range(3):
        claim = Claim(f"r{n}", f"u{n}")
        changes = [
            model.claim(claim, now=NOW, new_id=f"ev{n}-1".__str__),
            model.succeed(claim, None, now=NOW, new_id=f"ev{n}-2".__str__),
        ]
        await any_store.add_instance(model.instance_of(shared, claim, NOW), changes)
    relay = Relay(any_store, broker, batch=10, idle_s=0.01)
    await relay.relay_once()
    assert await any_store.pending_events(limit=10) == []
    await relay.relay_once()
    messages = await events.wait_for(6)
    assert sorted(m.message_id or "" for m in messages) == sorted(
        f"ev{n}-{k}" for n in range(3) for k in (1, 2)
    )
    await events.close()


async def test_an_unconfirmed_event_stays_and_goes_again_with_the_same_id(
    store: MongoStore, broker: Broker
) -> None:
    events = await Tap.on(broker, topology.EVENTS_EXCHANGE)
    await redeem_codes(store, 1)
    await Relay(store, FlakyBroker(broker, fail_on=2), batch=10, idle_s=0.01).relay_once()
    [pending] = await store.pending_events(limit=10)
    assert [p.event.event_id for p in pending.events] == ["ev0-2"]
    await Relay(store, broker, batch=10, idle_s=0.01).relay_once()
    messages = await events.wait_for(2)
    assert [m.message_id for m in messages] == ["ev0-1", "ev0-2"]
    assert await store.pending_events(limit=10) == []
    await events.close()


async def test_a_full_batch_the_broker_did_not_confirm_is_followed_by_a_pause(
    store: MongoStore, broker: Broker
) -> None:
    await redeem_codes(store, 2)

    busy = await Relay(store, FlakyBroker(broker, fail_on=1), batch=2, idle_s=0.01).relay_once()

    assert busy is False  # a full batch, but the broker is failing: no pass at once
    assert len(await store.pending_events(limit=10)) == 1


async def test_callers_that_asked_are_told_the_outcome(store: MongoStore, broker: Broker) -> None:
    replies = await Tap.on(broker, None)
    pending = Redemption(
        "r1",
        "q1",
        "u1",
        "ABC",
        NOW,
        NOW,
        replies=(ReplyTo(replies.queue.name, "c-1"), ReplyTo("gone", "c-2")),
    )
    await store.open_redemption(pending)
    await store.finish_redemption(
        Redemption("r1", "q1", "u1", "ABC", NOW, NOW, status=RedemptionStatus.REJECTED)
    )
    await Relay(store, broker, batch=10, idle_s=0.01).relay_once()
    [reply] = await replies.wait_for(1)
    assert reply.correlation_id == "c-1"
    assert json.loads(reply.body)["status"] == "Rejected"
    assert await store.pending_replies(limit=10) == []
    await replies.close()
