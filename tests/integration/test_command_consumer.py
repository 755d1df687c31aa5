"""The intake's command consumer on the real broker: its ack and dead-letter policy."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from services.intake.auth import admit_message, key_id
from services.intake.commands import CommandConsumer
from services.worker.bootstrap import bootstrap
from shared import topology
from shared.adapters.mongodb import MongoStore
from shared.adapters.rabbitmq import Broker
from shared.clock import utcnow
from shared.domain.access import ApiKeys, digest_of
from shared.domain.reasons import ReasonCode
from shared.domain.redemptions import RedemptionIds
from shared.ports import Delivery
from tests.conftest import MAX_DELIVERIES
from tests.support.amqp import Tap, ask, send_raw_strings
from tests.support.wait import eventually

NO_KEYS, IDS = ApiKeys.parse(""), RedemptionIds("secret")


async def test_a_command_over_its_delivery_limit_is_dead_lettered_with_its_reason(
    store: MongoStore, broker: Broker
) -> None:
    worker = bootstrap(store, {}, campaign_cache_ttl_s=0)
    commands = CommandConsumer(
        broker, worker.outcomes, worker.budget, utcnow, NO_KEYS, IDS, max_deliveries=MAX_DELIVERIES
    )
    dead = await Tap.on(broker, topology.DEAD_LETTER_EXCHANGE)
    await commands.start()
    try:
        command = {"userId": "u1", "scanCode": "ABC", "codeType": "gems"}
        await broker.publish(
            topology.COMMANDS_EXCHANGE,
            topology.REDEEM_ROUTING_KEY,
            json.dumps(command).encode(),
            headers={"x-delivery-count": MAX_DELIVERIES},
        )
        [message] = await dead.wait_for(1)
    finally:
        await commands.stop()
        await dead.close()
    headers = message.headers or {}
    assert str(headers[topology.DEAD_LETTER_REASON_CODE_HEADER]) == str(
        int(ReasonCode.DELIVERY_LIMIT_EXCEEDED)
    )


PARTNER_KEYS = ApiKeys.parse("partner-key=fulfillment")
NOT_UTF8 = {topology.AUTHORIZATION_HEADER: b"Bearer \xff\xfe-key"}


async def test_a_command_whose_key_is_not_utf8_is_refused_and_the_commands_still_flow(
    store: MongoStore, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    send_raw_strings(monkeypatch)
    worker = bootstrap(store, {}, campaign_cache_ttl_s=0)
    commands = CommandConsumer(
        broker, worker.outcomes, worker.budget, utcnow, PARTNER_KEYS, IDS, max_deliveries=1
    )
    work = await Tap.on(broker, topology.WORK_EXCHANGE, topology.REDEEM_ROUTING_KEY)
    dead = await Tap.on(broker, topology.DEAD_LETTER_EXCHANGE)
    await commands.start()
    try:
        redeem = {"userId": "u1", "scanCode": "ABC", "codeType": "gems"}
        answer = {"success": True, "complete": True}
        response = {"redemptionId": "r1", "redemptionCodeId": "c1", "attempt": 0}
        _, refused = await ask(broker, redeem, "c1", headers=NOT_UTF8)
        _, turned_down = await ask(
            broker,
            response | {"asyncResponse": answer},
            "c2",
            routing_key=topology.ASYNC_RESPONSE_ROUTING_KEY,
            headers=NOT_UTF8,
        )
        valid = json.dumps(redeem | {"requestId": "q1"}).encode()
        await broker.publish(topology.COMMANDS_EXCHANGE, topology.REDEEM_ROUTING_KEY, valid)
        [job] = await work.wait_for(1)
    finally:
        await commands.stop()
        await work.close()
        await dead.close()
    unauthenticated = int(ReasonCode.UNAUTHENTICATED)
    assert (refused["status"], refused["reasonCode"]) == (401, unauthenticated)
    assert (turned_down["status"], turned_down["reasonCode"]) == (401, unauthenticated)
    assert json.loads(job.body)["requestId"] == "q1" and dead.messages == []


async def test_a_delayed_copy_carries_no_key_yet_comes_back_as_its_keys(broker: Broker) -> None:
    seen: list[Mapping[str, Any]] = []

    async def retry_once(delivery: Delivery) -> None:
        seen.append(dict(delivery.headers))
        if len(seen) == 1:
            await delivery.retry_later(0.1)
        else:
            await delivery.ack()

    delayed = await Tap.on(broker, topology.DELAY_EXCHANGE)
    subscription = await broker.consume(topology.INTAKE_QUEUE, retry_once)
    try:
        forged = {topology.KEY_DIGEST_HEADER: digest_of("partner-key")}
        await broker.publish(
            topology.COMMANDS_EXCHANGE,
            topology.REDEEM_ROUTING_KEY,
            b"{}",
            headers={topology.AUTHORIZATION_HEADER: "Bearer partner-key"} | forged,
        )
        [copy] = await delayed.wait_for(1)
        await eventually(lambda: _count(seen), until=lambda n: n >= 2, timeout_s=20.0, what="2")
    finally:
        await subscription.cancel()
        await delayed.close()
    first, again = seen
    assert topology.KEY_DIGEST_HEADER not in first  # a sender's own is not believed
    assert topology.AUTHORIZATION_HEADER not in (copy.headers or {})
    assert topology.AUTHORIZATION_HEADER not in again
    assert admit_message(PARTNER_KEYS, again, "fulfillment").who == "key:" + key_id("partner-key")


async def _count(seen: list[Mapping[str, Any]]) -> int:
    return len(seen)
