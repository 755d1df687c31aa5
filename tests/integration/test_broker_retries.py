"""Delayed retries on the real broker: a copy waits in its delay queue, comes back to
the queue it left, counted, and the count bounds the deliveries of every copy."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Mapping
from typing import Any

from services.intake.commands import CommandConsumer
from services.worker.bootstrap import bootstrap
from shared import topology
from shared.adapters.rabbitmq import Broker
from shared.clock import utcnow
from shared.domain.access import ApiKeys
from shared.domain.reasons import ReasonCode
from shared.domain.redemptions import RedemptionIds
from shared.ports import Delivery, Handler, Subscription
from tests.fakes import FakeStore
from tests.support.amqp import Tap
from tests.support.wait import eventually

LIMIT = 3

NO_KEYS, IDS = ApiKeys.parse(""), RedemptionIds("secret")


class WorkRefused:
    """The real broker, except that it never confirms a job on the work exchange; it
    notes when each delivery arrives and how many deliveries it had before."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self.arrivals: list[tuple[float, int, str]] = []

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        *,
        mandatory: bool = True,
        message_id: str | None = None,
        correlation_id: str | None = None,
        reply_to: str | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> None:
        if exchange == topology.WORK_EXCHANGE:
            raise TimeoutError("the broker did not confirm the job")
        await self._broker.publish(
            exchange,
            routing_key,
            body,
            mandatory=mandatory,
            message_id=message_id,
            correlation_id=correlation_id,
            reply_to=reply_to,
            headers=headers,
        )

    async def consume(self, queue: str, handle: Handler) -> Subscription:
        async def noted(delivery: Delivery) -> None:
            self.arrivals.append((time.monotonic(), delivery.deliveries, delivery.routing_key))
            await handle(delivery)

        return await self._broker.consume(queue, noted)

    async def queue_depth(self, queue: str) -> int:
        return await self._broker.queue_depth(queue)


async def queue_depths(broker: Broker) -> list[int]:
    names = [topology.INTAKE_QUEUE, *map(topology.delay_queue, topology.DELAY_STEPS_MS)]
    return [await broker.queue_depth(name) for name in names]


async def test_a_command_retried_through_the_delay_queues_is_dead_lettered_at_its_limit(
    broker: Broker,
) -> None:
    refusing = WorkRefused(broker)
    worker = bootstrap(FakeStore(), {}, campaign_cache_ttl_s=0)
    commands = CommandConsumer(
        refusing, worker.outcomes, worker.budget, utcnow, NO_KEYS, IDS, max_deliveries=LIMIT
    )
    dead = await Tap.on(broker, topology.DEAD_LETTER_EXCHANGE)
    await commands.start()
    try:
        command = {"userId": "u1", "scanCode": "ABC", "codeType": "gems"}
        await broker.publish(
            topology.COMMANDS_EXCHANGE,
            topology.REDEEM_ROUTING_KEY,
            json.dumps(command).encode(),
            message_id="m1",
        )
        [message] = await dead.wait_for(1, timeout_s=60)
    finally:
        await commands.stop()
        await dead.close()
    arrivals = refusing.arrivals
    assert [(n, key) for _, n, key in arrivals] == [(n, "redeem") for n in range(LIMIT + 1)]
    waits = [later[0] - earlier[0] for earlier, later in itertools.pairwise(arrivals)]
    steps = [topology.DELAY_STEPS_MS[n] / 1000 for n in range(LIMIT)]  # 0.5 s, 1 s, 2 s
    assert all(wait >= step * 0.9 for wait, step in zip(waits, steps, strict=True)), waits
    headers = message.headers or {}
    assert str(headers[topology.DEAD_LETTER_REASON_CODE_HEADER]) == str(
        int(ReasonCode.DELIVERY_LIMIT_EXCEEDED)
    )
    assert headers[topology.DELIVERIES_HEADER] == LIMIT
    assert headers[topology.ORIGINAL_EXCHANGE_HEADER] == topology.COMMANDS_EXCHANGE
    assert headers[topology.ORIGINAL_ROUTING_KEY_HEADER] == topology.REDEEM_ROUTING_KEY
    assert message.message_id == "m1"
    await eventually(
        lambda: queue_depths(broker), until=lambda d: not any(d), what="every queue empty"
    )
