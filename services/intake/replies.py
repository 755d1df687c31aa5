"""This process's reply queue: outcomes of the redemptions a caller waits for."""

from __future__ import annotations

import asyncio

import structlog
from aio_pika.abc import AbstractIncomingMessage

from shared.adapters.rabbitmq import Broker
from shared.messages import RedemptionRecord

log = structlog.get_logger()


class Replies:
    """An exclusive queue the results service answers to, one future per waiting caller."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._waiting: dict[str, list[asyncio.Future[RedemptionRecord]]] = {}
        self._queue_name: str | None = None

    @property
    def queue_name(self) -> str:
        assert self._queue_name is not None, "start() first"
        return self._queue_name

    async def start(self) -> None:
        self._queue_name = (await self._broker.consume_replies(self._on_reply)).queue_name

    def expect(self, redemption_id: str) -> asyncio.Future[RedemptionRecord]:
        future: asyncio.Future[RedemptionRecord] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(redemption_id, []).append(future)
        return future

    def forget(self, redemption_id: str, future: asyncio.Future[RedemptionRecord]) -> None:
        waiting = self._waiting.get(redemption_id, [])
        if future in waiting:
            waiting.remove(future)
        if not waiting:
            self._waiting.pop(redemption_id, None)

    async def _on_reply(self, message: AbstractIncomingMessage) -> None:
        try:
            record = RedemptionRecord.model_validate_json(message.body)
        except ValueError:
            log.warning("ignoring a malformed reply")
            return
        for future in self._waiting.pop(record.redemptionId, []):
            if not future.done():
                future.set_result(record)
