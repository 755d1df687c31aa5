"""The dead-letter log on the real broker: dead letters listed with their reasons, newest
first, without taking any off the dead-letter queue, and no channel left open."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta

import aiormq
import pytest

from shared import topology
from shared.adapters.rabbitmq import Broker
from shared.adapters.rabbitmq.declare import dead_letter_log_arguments
from shared.clock import utcnow
from shared.domain.reasons import DomainError, ReasonCode
from shared.ports import Delivery
from shared.ports.broker import DEAD_LETTER_BODY_SHOWN, DeadLetter
from tests.fake_broker import FakeBroker, FakeDelivery, Message
from tests.support.wait import eventually

LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)
WHY = {
    "m0": DomainError(ReasonCode.INVALID_PARAMETER_VALUE, "not a job"),
    "m1": DomainError(ReasonCode.DELIVERY_LIMIT_EXCEEDED, "tried too often"),
    "m2": DomainError(ReasonCode.REDEMPTION_CODE_TYPE_NOT_FOUND, "no such campaign"),
    "m3": DomainError(ReasonCode.INVALID_SCAN_CODE, "unreadable"),
    "m4": DomainError(ReasonCode.REDEMPTION_FAILED, "gave up"),
}


def open_channels(broker: Broker) -> int:
    transport = broker.connection.transport
    assert transport is not None
    return len(transport.connection.channels)


def body_of(message_id: str) -> bytes:
    return json.dumps({"job": message_id}).encode()


async def dead_letter(broker: Broker, *message_ids: str, body: bytes | None = None) -> None:
    """Each job to the work queue, dead-lettered by its consumer with its reason in `WHY`,
    one after the other, so that the log has them in this order."""

    async def refuse(delivery: Delivery) -> None:
        await delivery.dead_letter(WHY[delivery.message_id or ""])

    subscription = await broker.consume(topology.WORK_QUEUE, refuse)
    try:
        for message_id in message_ids:
            before = await broker.queue_depth(topology.DEAD_LETTER_QUEUE)
            await broker.publish(
                topology.WORK_EXCHANGE,
                topology.REDEEM_ROUTING_KEY,
                body if body is not None else body_of(message_id),
                message_id=message_id,
            )
            await dead_letters_queued(broker, before + 1)
    finally:
        await subscription.cancel()


async def dead_letters_queued(broker: Broker, count: int) -> None:
    await eventually(
        lambda: broker.queue_depth(topology.DEAD_LETTER_QUEUE),
        until=lambda depth: depth == count,
        what=f"{count} messages on the dead-letter queue",
    )


def ids(letters: list[DeadLetter]) -> list[str | None]:
    return [letter.message_id for letter in letters]


async def test_dead_letters_are_listed_newest_first_with_their_reasons(broker: Broker) -> None:
    started = utcnow().replace(microsecond=0)
    await dead_letter(broker, "m0", "m1", "m2")

    letters = await broker.dead_letters(LONG_AGO, 10)

    assert ids(letters) == ["m2", "m1", "m0"]
    for letter in letters:
        why = WHY[letter.message_id or ""]
        assert letter.reason_code == int(why.reason)
        assert letter.reason == f"{int(why.reason)} {why.reason.name}: {why.message}"
        assert letter.routing_key == topology.REDEEM_ROUTING_KEY
        assert letter.body == body_of(letter.message_id or "")
        assert letter.size == len(letter.body)
        assert started <= letter.at <= utcnow() and letter.at.tzinfo is not None


async def test_browsing_takes_nothing_off_the_queue_and_gives_the_same_answer_again(
    broker: Broker,
) -> None:
    await dead_letter(broker, "m0", "m1", "m2")

    first = await broker.dead_letters(LONG_AGO, 10)
    second = await broker.dead_letters(LONG_AGO, 10)  # past the first one's marker

    assert first == second and ids(first) == ["m2", "m1", "m0"]  # no marker among them
    assert await broker.queue_depth(topology.DEAD_LETTER_QUEUE) == 3  # markers not there


async def test_limit_keeps_the_newest(broker: Broker) -> None:
    await dead_letter(broker, "m0", "m1", "m2", "m3", "m4")

    assert ids(await broker.dead_letters(LONG_AGO, 2)) == ["m4", "m3"]
    assert ids(await broker.dead_letters(LONG_AGO, 1)) == ["m4"]


async def test_since_leaves_older_dead_letters_out(broker: Broker) -> None:
    await dead_letter(broker, "m0")
    [older] = await broker.dead_letters(LONG_AGO, 10)
    # Time is kept to the second: the next dead letter in a later one.
    since = await eventually(
        lambda: asyncio.sleep(0, utcnow()), until=lambda now: now - older.at >= timedelta(seconds=1)
    )
    await dead_letter(broker, "m1")

    assert ids(await broker.dead_letters(since, 10)) == ["m1"]
    assert ids(await broker.dead_letters(older.at, 10)) == ["m1", "m0"]
    assert await broker.dead_letters(utcnow() + timedelta(hours=1), 10) == []


async def test_only_the_first_64_kib_of_a_body_are_kept_with_its_size(broker: Broker) -> None:
    await dead_letter(broker, "m0", body=b"x" * (DEAD_LETTER_BODY_SHOWN + 5))

    [letter] = await broker.dead_letters(LONG_AGO, 10)

    assert (letter.body, letter.size) == (b"x" * DEAD_LETTER_BODY_SHOWN, DEAD_LETTER_BODY_SHOWN + 5)


async def test_a_message_the_broker_dead_lettered_says_so(broker: Broker) -> None:
    # A queue whose dead-lettering reaches a stream on RabbitMQ 3.10 (at least once).
    channel = await broker.connection.channel()
    queue = await channel.declare_queue(
        "rejecting",
        durable=True,
        arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": topology.DEAD_LETTER_EXCHANGE,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        },
    )
    await broker.publish("", "rejecting", b"{}", message_id="b0")
    message = await eventually(lambda: queue.get(fail=False), what="the message")
    assert message is not None
    await message.reject(requeue=False)
    await channel.close()

    [letter] = await eventually(
        lambda: broker.dead_letters(LONG_AGO, 10), what="the broker's dead letter"
    )

    assert letter.message_id == "b0" and letter.reason_code is None
    assert letter.reason == "rejected (dead-lettered by the broker from rejecting)"


async def test_browsing_leaves_no_channel_open_even_when_it_fails(broker: Broker) -> None:
    await dead_letter(broker, "m0")
    before = open_channels(broker)
    for _ in range(3):
        assert ids(await broker.dead_letters(LONG_AGO, 10)) == ["m0"]
    broker.dead_letters_timeout_s = 0
    with pytest.raises(TimeoutError, match="not read to its end"):
        await broker.dead_letters(LONG_AGO, 10)
    broker.dead_letters_timeout_s = 10
    channel = await broker.connection.channel()
    await channel.queue_delete(topology.DEAD_LETTER_LOG)
    await channel.close()
    with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
        await broker.dead_letters(LONG_AGO, 10)
    await asyncio.sleep(0.5)  # as long as a robust channel takes to reopen itself

    assert open_channels(broker) == before
    assert await broker.queue_depth(topology.DEAD_LETTER_QUEUE) == 1  # and the broker works


async def test_the_log_is_declared_as_a_stream_bound_to_the_dead_letter_exchange(
    broker: Broker,
) -> None:
    channel = await broker.connection.channel()
    try:
        # Declared again as a quorum queue, it refuses: it is a stream.
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed, match="x-queue-type"):
            await channel.declare_queue(
                topology.DEAD_LETTER_LOG,
                durable=True,
                arguments=dead_letter_log_arguments() | {"x-queue-type": "quorum"},
            )
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
    await broker.declare_topology(max_deliveries=5)  # idempotent
    await broker.publish(topology.DEAD_LETTER_EXCHANGE, "anything", b"{}", message_id="d0")

    assert ids(await broker.dead_letters(LONG_AGO, 10)) == ["d0"]


async def test_the_fake_broker_reads_back_what_the_real_one_does(broker: Broker) -> None:
    fake = FakeBroker()
    for message_id in ("m0", "m1", "m2"):
        job = Message("", topology.REDEEM_ROUTING_KEY, body_of(message_id), message_id)
        await FakeDelivery(fake, topology.WORK_QUEUE, job).dead_letter(WHY[message_id])
    await dead_letter(broker, "m0", "m1", "m2")

    real = await broker.dead_letters(LONG_AGO, 2)
    faked = await fake.dead_letter_log.dead_letters(LONG_AGO, 2)

    assert [
        (d.routing_key, d.reason_code, d.reason, d.message_id, d.body, d.size) for d in real
    ] == [(d.routing_key, d.reason_code, d.reason, d.message_id, d.body, d.size) for d in faked]
    assert await fake.dead_letter_log.dead_letters(utcnow() + timedelta(seconds=2), 2) == []


@pytest.mark.parametrize("since, limit", [(datetime(2000, 1, 1), 10), (LONG_AGO, 0)])
async def test_a_naive_since_or_a_limit_below_one_is_refused(
    broker: Broker, since: datetime, limit: int
) -> None:
    before = open_channels(broker)
    with pytest.raises(ValueError):
        await broker.dead_letters(since, limit)
    assert open_channels(broker) == before
