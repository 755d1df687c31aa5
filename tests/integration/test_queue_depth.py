"""The broker's queue depths, as `results` samples them: ready messages counted, and a
queue that is not there refused without leaving a channel open each time it is asked."""

from __future__ import annotations

import asyncio

import aiormq
import pytest

from shared import topology
from shared.adapters.rabbitmq import Broker


def open_channels(broker: Broker) -> int:
    transport = broker.connection.transport
    assert transport is not None
    return len(transport.connection.channels)


async def test_ready_messages_are_counted(broker: Broker) -> None:
    assert await broker.queue_depth(topology.DEAD_LETTER_QUEUE) == 0
    for n in range(3):
        await broker.publish("", topology.DEAD_LETTER_QUEUE, b"{}", message_id=f"m{n}")

    assert await broker.queue_depth(topology.DEAD_LETTER_QUEUE) == 3


async def test_a_missing_queue_is_refused_and_leaves_no_channel_open(broker: Broker) -> None:
    before = open_channels(broker)
    for _ in range(3):
        with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
            await broker.queue_depth("no-such-queue")
    await asyncio.sleep(0.5)  # as long as a robust channel takes to reopen itself

    assert open_channels(broker) == before
    assert await broker.queue_depth(topology.WORK_QUEUE) == 0  # and the broker still works
