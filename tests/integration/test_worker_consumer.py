"""The worker's consumer on the real broker and store: acks, redelivery, dead letters."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aio_pika
import pytest

from services.worker.bootstrap import bootstrap
from services.worker.consumer import WorkConsumer, pending_from_job
from shared import topology
from shared.adapters.mongodb import MongoStore
from shared.adapters.rabbitmq import Broker
from shared.clock import utcnow
from shared.domain.model import Campaign, Code, CodeRef, CodeUseType, Redemption, RedemptionStatus
from shared.domain.reasons import ReasonCode
from shared.domain.states import CodeState
from shared.handlers.grant_reward import grant_reward
from shared.messages import RedemptionJob
from shared.runtime import failpoints
from tests.conftest import MAX_DELIVERIES
from tests.support.amqp import Tap
from tests.support.wait import eventually

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def job(rid: str, user: str = "u1", scan: str = "ABC") -> RedemptionJob:
    return RedemptionJob(
        redemptionId=rid,
        requestId=rid,
        userId=user,
        scanCode=scan,
        codeType="gems",
        acceptedAt=1795400000000,
    )


@pytest.fixture
async def consumer(store: MongoStore, broker: Broker) -> AsyncIterator[WorkConsumer]:
    await store.create_campaign(
        Campaign("gems", CodeUseType.SINGLE, NOW, NOW, handler="grant-reward")
    )
    await store.add_code(
        Code(
            "c1",
            "gems",
            "ABC",
            CodeState.AVAILABLE,
            NOW,
            NOW,
            custom_code_info={"reward": {"item": "gems", "quantity": 1}},
        )
    )
    service = bootstrap(store, {"grant-reward": grant_reward}, campaign_cache_ttl_s=0).redeem
    running = WorkConsumer(service, broker, utcnow, max_deliveries=MAX_DELIVERIES)
    yield running
    await running.stop()


async def publish(broker: Broker, body: bytes, headers: dict[str, object] | None = None) -> None:
    await broker.publish(
        topology.WORK_EXCHANGE, topology.REDEEM_ROUTING_KEY, body, headers=headers or {}
    )


async def redemption_status(store: MongoStore, rid: str) -> RedemptionStatus | None:
    found = await store.get_redemption(rid)
    return found.status if found else None


async def test_a_malformed_job_is_dead_lettered_with_its_reason_and_the_next_one_runs(
    consumer: WorkConsumer, broker: Broker, store: MongoStore
) -> None:
    dead = await Tap.on(broker, topology.DEAD_LETTER_EXCHANGE)
    await consumer.start()
    await publish(broker, b'{"redemptionId": 42, "not": "a job"')
    await publish(broker, json.dumps({"schemaVersion": 1, "redemptionId": "x"}).encode())
    await publish(broker, job("good").model_dump_json().encode())
    [first, second] = await dead.wait_for(2)
    for message in (first, second):
        reason = str((message.headers or {})[topology.DEAD_LETTER_REASON_HEADER])
        assert reason.startswith("40660 INVALID_PARAMETER_VALUE")
    assert "Invalid JSON" in str((first.headers or {})[topology.DEAD_LETTER_REASON_HEADER])
    assert "userId" in str((second.headers or {})[topology.DEAD_LETTER_REASON_HEADER])
    await eventually(
        lambda: redemption_status(store, "good"),
        until=lambda s: s is RedemptionStatus.REDEEMED,
        what="the good job",
    )
    assert await store.get_redemption("x") is None
    await dead.close()


async def test_a_job_redelivered_after_a_nack_claims_once(
    consumer: WorkConsumer, broker: Broker, store: MongoStore
) -> None:
    await publish(broker, job("r1").model_dump_json().encode())
    queue = await broker.consuming.get_queue(topology.WORK_QUEUE)
    message = await eventually(lambda: queue.get(fail=False), what="the job")
    assert message is not None
    # A worker that did the work but died before its ack: the broker redelivers.
    first = await consumer._service.redeem(_pending(message.body))
    await message.nack(requeue=True)
    await consumer.start()
    await eventually(
        lambda: queue.declare(),
        until=lambda ok: ok.message_count == 0,
        what="the redelivery consumed",
    )
    final = await store.get_redemption("r1")
    assert final is not None and final == first
    code = await store.get_code(CodeRef("gems", "ABC"))
    assert code is not None and code.redemption_id == "r1"
    assert [h.action.value for h in code.history] == ["redeem", "succeed"]
    [events] = await store.pending_events(limit=10)
    assert [p.event.name for p in events.events] == ["inprogress", "redeemed"]


async def test_a_job_over_its_delivery_limit_ends_failed_and_is_dead_lettered(
    consumer: WorkConsumer, broker: Broker, store: MongoStore
) -> None:
    dead = await Tap.on(broker, topology.DEAD_LETTER_EXCHANGE)
    await consumer.start()
    await publish(
        broker,
        job("tired").model_dump_json().encode(),
        headers={"x-delivery-count": MAX_DELIVERIES},
    )
    [message] = await dead.wait_for(1)
    assert json.loads(message.body)["redemptionId"] == "tired"
    assert str((dead.messages[0].headers or {})[topology.DEAD_LETTER_REASON_CODE_HEADER]) == str(
        int(ReasonCode.DELIVERY_LIMIT_EXCEEDED)
    )
    final = await store.get_redemption("tired")
    assert final is not None and final.status is RedemptionStatus.FAILED
    code = await store.get_code(CodeRef("gems", "ABC"))
    assert code is not None and code.code_state is CodeState.AVAILABLE
    await dead.close()


async def test_a_job_that_fails_only_deep_inside_is_dead_lettered_with_its_reason(
    consumer: WorkConsumer, broker: Broker, store: MongoStore
) -> None:
    dead = await Tap.on(broker, topology.DEAD_LETTER_EXCHANGE)
    await consumer.start()
    far = json.loads(job("far").model_dump_json()) | {"acceptedAt": 10**20}
    await publish(broker, json.dumps(far).encode())
    await publish(broker, job("good").model_dump_json().encode())
    [message] = await dead.wait_for(1)
    reason = str((message.headers or {})[topology.DEAD_LETTER_REASON_HEADER])
    assert reason.startswith("40660 INVALID_PARAMETER_VALUE") and "acceptedAt" in reason
    await eventually(
        lambda: redemption_status(store, "good"),
        until=lambda s: s is RedemptionStatus.REDEEMED,
        what="the good job",
    )
    await dead.close()


async def test_a_job_whose_give_up_fails_is_tried_again_until_its_redemption_ends(
    consumer: WorkConsumer, broker: Broker, store: MongoStore
) -> None:
    draws = iter([0.0])  # the first give-up fails, the next ones do not
    failpoints.configure("in-give-up=raise@0.5", draw=lambda: next(draws, 1.0))
    try:
        await consumer.start()
        await publish(
            broker,
            job("tired").model_dump_json().encode(),
            headers={"x-delivery-count": MAX_DELIVERIES},
        )
        ended = await eventually(
            lambda: store.get_redemption("tired"),
            until=lambda r: r is not None and r.status.is_terminal,
            timeout_s=40,
            what="the redemption ended",
        )
    finally:
        failpoints.configure("")
    assert ended is not None and ended.status.is_terminal


def _pending(body: bytes) -> Redemption:
    return pending_from_job(RedemptionJob.model_validate_json(body), utcnow)


async def test_the_topology_can_be_declared_again(broker: Broker) -> None:
    await broker.declare_topology(max_deliveries=MAX_DELIVERIES)
    queue = await broker.consuming.get_queue(topology.WORK_QUEUE)
    assert queue.name == topology.WORK_QUEUE
    assert isinstance(queue, aio_pika.abc.AbstractQueue)
