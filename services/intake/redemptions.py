"""RedeemCode at the intake: validate, name, publish with confirms; never claim."""

from __future__ import annotations

import asyncio
import uuid

import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue
from prometheus_client import Counter

from shared import topology
from shared.adapters.rabbitmq import Broker
from shared.clock import Clock, new_id, to_ms
from shared.domain.scancode import checked
from shared.failpoints import failpoint
from shared.messages import Info, RedemptionJob, RedemptionRecord

log = structlog.get_logger()
ACCEPTED = Counter("redemptions_accepted", "Redemptions published to the work queue", ["via"])
_NAMESPACE = uuid.UUID("6f1c3a52-8d0e-4b7a-9a51-3c2f04d7be10")


def redemption_id_for(user_id: str, request_id: str) -> str:
    """The same user and request id always name the same redemption."""
    return str(uuid.uuid5(_NAMESPACE, f"{user_id}\x1f{request_id}"))


def job_for(
    *,
    user_id: str,
    scan_code: str,
    code_type: str | None,
    custom_redemption_info: Info | None,
    request_id: str | None,
    clock: Clock,
    reply_to: str | None = None,
    correlation_id: str | None = None,
) -> RedemptionJob:
    """A checked job; raises DomainError for a scan code that cannot exist."""
    checked(scan_code)
    request_id = request_id or new_id()
    redemption_id = redemption_id_for(user_id, request_id)
    return RedemptionJob.model_validate(
        {
            "redemptionId": redemption_id,
            "requestId": request_id,
            "userId": user_id,
            "scanCode": scan_code,
            "codeType": code_type,
            "customRedemptionInfo": custom_redemption_info,
            "acceptedAt": to_ms(clock()),
            "replyTo": reply_to,
            "correlationId": correlation_id or (redemption_id if reply_to else None),
        }
    )


async def submit(broker: Broker, job: RedemptionJob, via: str) -> None:
    await broker.publish(
        topology.WORK_EXCHANGE,
        topology.REDEEM_ROUTING_KEY,
        job.model_dump_json().encode(),
        message_id=job.redemptionId,
    )
    ACCEPTED.labels(via).inc()
    await failpoint("intake-after-publish")


class Outcomes:
    """This process's reply queue: outcomes of the redemptions it waits for."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[asyncio.Future[RedemptionRecord]]] = {}
        self._queue: AbstractQueue | None = None

    @property
    def queue_name(self) -> str:
        assert self._queue is not None, "start() first"
        return self._queue.name

    async def start(self, broker: Broker) -> None:
        self._queue = await broker.consuming.declare_queue(exclusive=True, auto_delete=True)
        await self._queue.consume(self._on_reply, no_ack=True)

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
