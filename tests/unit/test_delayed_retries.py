"""The RabbitMQ adapter's delayed retries, without a broker: which delay queue a copy
goes to, the deliveries it carries, and where it is routed back to."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from aio_pika.abc import AbstractIncomingMessage

from shared import topology
from shared.adapters.rabbitmq import RabbitDelivery
from shared.adapters.rabbitmq.delivery import copy_headers, delay_step_ms, deliveries
from shared.domain.backoff import compute_backoff
from shared.domain.reasons import DomainError, ReasonCode
from tests.fake_broker import FakeBroker


@dataclass
class StubMessage:
    """The part of an aio-pika incoming message a delivery reads and settles."""

    body: bytes = b"{}"
    headers: dict[str, Any] = field(default_factory=dict)
    exchange: str = topology.COMMANDS_EXCHANGE
    routing_key: str = topology.ASYNC_RESPONSE_ROUTING_KEY
    message_id: str | None = "m1"
    correlation_id: str | None = "c1"
    reply_to: str | None = "caller"
    settled: list[str] = field(default_factory=list)

    @property
    def processed(self) -> bool:
        return bool(self.settled)

    async def ack(self) -> None:
        self.settled.append("ack")

    async def nack(self, requeue: bool = True) -> None:
        self.settled.append(f"nack requeue={requeue}")


def delivery(message: StubMessage, broker: FakeBroker) -> RabbitDelivery:
    return RabbitDelivery(cast(AbstractIncomingMessage, message), topology.INTAKE_QUEUE, broker)


def test_the_delay_queues_are_the_steps_of_the_broker_retry_policy() -> None:
    policy = topology.BROKER_RETRY
    delays = [round(compute_backoff(policy, n, 0.0) * 1000) for n in range(12)]
    assert tuple(sorted(set(delays))) == topology.DELAY_STEPS_MS
    names = [topology.delay_queue(ms) for ms in topology.DELAY_STEPS_MS]
    assert len(set(names)) == len(names) and topology.WORK_QUEUE not in names


@pytest.mark.parametrize(
    ("delay_s", "step_ms"),
    [(0.0, 500), (0.5, 500), (0.7, 1_000), (4.0, 4_000), (29.0, 30_000), (3600.0, 30_000)],
)
def test_a_delay_goes_to_the_shortest_step_not_shorter(delay_s: float, step_ms: int) -> None:
    assert delay_step_ms(delay_s) == step_ms


def test_deliveries_count_the_copies_before_and_the_broker_redeliveries_of_this_one() -> None:
    assert deliveries({}) == 0
    assert deliveries({"x-delivery-count": 2}) == 2
    assert deliveries({topology.DELIVERIES_HEADER: 3, "x-delivery-count": 1}) == 4
    assert deliveries({topology.DELIVERIES_HEADER: "x", "x-delivery-count": -5}) == 0


def test_a_copy_leaves_behind_what_the_broker_set_on_the_message() -> None:
    headers = {
        "x-delivery-count": 3,
        "x-death": [{"count": 1}],
        "x-first-death-queue": "q",
        "x-last-death-queue": "q",
        topology.START_OVER_HEADER: 2,
        "traceparent": "t",
    }
    assert copy_headers(headers) == {topology.START_OVER_HEADER: 2, "traceparent": "t"}


async def test_a_retry_is_a_confirmed_copy_to_its_delay_queue_then_an_ack() -> None:
    broker, message = FakeBroker(), StubMessage(headers={"x-delivery-count": 1})
    await delivery(message, broker).retry_later(2.0)
    [copy] = broker.published
    assert (copy.exchange, copy.routing_key) == (topology.DELAY_EXCHANGE, topology.INTAKE_QUEUE)
    assert copy.headers[topology.DELAY_HEADER] == "2000"
    assert copy.headers[topology.DELIVERIES_HEADER] == 2 and "x-delivery-count" not in copy.headers
    assert (copy.message_id, copy.correlation_id, copy.reply_to) == ("m1", "c1", "caller")
    assert message.settled == ["ack"]


async def test_a_copy_not_confirmed_leaves_the_delivery_unsettled_for_release() -> None:
    broker, message = FakeBroker(), StubMessage()
    broker.refuse(topology.DELAY_EXCHANGE)
    retried = delivery(message, broker)
    with pytest.raises(TimeoutError):
        await retried.retry_later(0.5)
    assert message.settled == []
    await retried.release()
    await retried.release()  # settled already: nothing more
    assert message.settled == ["nack requeue=True"]


async def test_a_copy_routed_back_keeps_where_it_was_first_published() -> None:
    broker, first = FakeBroker(), StubMessage()
    await delivery(first, broker).retry_later(0.5)
    [copy] = broker.published
    back = StubMessage(
        headers=dict(copy.headers) | {"x-death": [{"count": 1}]},
        exchange=topology.RETRY_EXCHANGE,
        routing_key=topology.INTAKE_QUEUE,
    )
    returned = delivery(back, broker)
    assert returned.routing_key == topology.ASYNC_RESPONSE_ROUTING_KEY
    assert returned.deliveries == 1
    await returned.dead_letter(DomainError(ReasonCode.DELIVERY_LIMIT_EXCEEDED, "tired"))
    dead = broker.dead_letters()[0]
    assert dead.headers[topology.ORIGINAL_EXCHANGE_HEADER] == topology.COMMANDS_EXCHANGE
    assert dead.headers[topology.ORIGINAL_ROUTING_KEY_HEADER] == "async-response"
    assert dead.reason_code == int(ReasonCode.DELIVERY_LIMIT_EXCEEDED)
    assert back.settled == ["ack"]


async def test_a_fresh_copy_starts_its_count_again_with_the_headers_given() -> None:
    broker = FakeBroker()
    tired = StubMessage(headers={topology.DELIVERIES_HEADER: 4, "x-delivery-count": 1})
    await delivery(tired, broker).start_over(1.0, {topology.START_OVER_HEADER: 1})
    [copy] = broker.published
    assert topology.DELIVERIES_HEADER not in copy.headers
    assert copy.headers[topology.START_OVER_HEADER] == 1
    assert copy.headers[topology.DELAY_HEADER] == "1000"
    assert tired.settled == ["ack"]
