"""The intake's command consumer on the real broker: its ack and dead-letter policy."""

from __future__ import annotations

import json

from services.intake.commands import CommandConsumer
from services.worker.bootstrap import bootstrap
from shared import topology
from shared.adapters.mongodb import MongoStore
from shared.adapters.rabbitmq import Broker
from shared.clock import utcnow
from shared.domain.reasons import ReasonCode
from tests.conftest import MAX_DELIVERIES
from tests.support.amqp import Tap


async def test_a_command_over_its_delivery_limit_is_dead_lettered_with_its_reason(
    store: MongoStore, broker: Broker
) -> None:
    worker = bootstrap(store, {}, campaign_cache_ttl_s=0)
    commands = CommandConsumer(
        broker, worker.outcomes, worker.budget, utcnow, max_deliveries=MAX_DELIVERIES
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
