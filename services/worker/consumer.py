"""The work queue, consumed: one redemption job per message.

Ack policy: a job is acked once its outcome is stored. A body that is not a
job is dead-lettered at once with the reason. A job that fails for want of
the store or broker is requeued after a pause; at `max_deliveries` it is
ended as failed and dead-lettered, so that no redemption waits forever. If
even that cannot be recorded, it is requeued after a pause again: every way
out ends in an ack, a delayed retry or a dead-letter with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

import structlog
from aio_pika.abc import AbstractIncomingMessage
from prometheus_client import Counter

from services.worker.redeem import RedeemService
from shared import topology
from shared.adapters.rabbitmq import Broker, Consumer, delivery_count
from shared.clock import Clock, from_ms
from shared.domain.model import Redemption, ReplyTo
from shared.domain.reasons import DomainError, ReasonCode
from shared.messages import RedemptionJob, parse

log = structlog.get_logger()
OUTCOMES = Counter("redemption_outcomes", "Redemptions ended by a worker", ["status", "reason"])


def pending_from_job(job: RedemptionJob, clock: Clock) -> Redemption:
    """Translate the wire job into the domain's pending redemption."""
    replies = (ReplyTo(job.replyTo, job.correlationId or job.redemptionId),) if job.replyTo else ()
    return Redemption(
        redemption_id=job.redemptionId,
        request_id=job.requestId,
        user_id=job.userId,
        scan_code=job.scanCode,
        code_type=job.codeType,
        custom_redemption_info=job.customRedemptionInfo,
        accepted_at=from_ms(job.acceptedAt),
        updated_at=clock(),
        replies=replies,
    )


class WorkConsumer(Consumer):
    def __init__(
        self, service: RedeemService, broker: Broker, clock: Clock, *, max_deliveries: int
    ) -> None:
        self._service = service
        super().__init__(broker, topology.WORK_QUEUE)
        self._clock = clock
        self._max_deliveries = max_deliveries

    async def handle(self, message: AbstractIncomingMessage) -> None:
        try:
            job = parse(RedemptionJob, message.body)
            pending = pending_from_job(job, self._clock)
        except (DomainError, ValueError, OverflowError) as exc:
            error = exc if isinstance(exc, DomainError) else _malformed(exc)
            log.warning("dead-lettering a malformed job", reason=error.message)
            await self._settle(message, self._broker.dead_letter(message, error))
            return
        with structlog.contextvars.bound_contextvars(
            redemptionId=job.redemptionId, requestId=job.requestId
        ):
            await self._handle(message, pending)

    async def _handle(self, message: AbstractIncomingMessage, pending: Redemption) -> None:
        deliveries = delivery_count(message)
        if deliveries >= self._max_deliveries:
            await self._give_up(message, pending, deliveries)
            return
        try:
            outcome = await self._service.redeem(pending)
        except Exception:
            log.exception("redemption interrupted; requeueing", deliveries=deliveries)
            await self._retry_later(message, deliveries)
            return
        reason = outcome.reason_code.name if outcome.reason_code else ""
        OUTCOMES.labels(outcome.status.value, reason).inc()
        log.info("redemption ended", status=outcome.status.value, reason=reason)
        await self._settle(message, message.ack())

    async def _give_up(
        self, message: AbstractIncomingMessage, pending: Redemption, deliveries: int
    ) -> None:
        error = DomainError(
            ReasonCode.DELIVERY_LIMIT_EXCEEDED,
            f"could not be carried out in {deliveries} deliveries",
        )
        try:
            await self._service.give_up(pending, error)
        except Exception:
            log.exception("could not end the redemption; requeueing", deliveries=deliveries)
            await self._retry_later(message, deliveries)
            return
        await self._settle(message, self._broker.dead_letter(message, error))

    async def _retry_later(self, message: AbstractIncomingMessage, deliveries: int) -> None:
        await asyncio.sleep(min(0.5 * 2**deliveries, 10.0))
        await self._settle(message, message.nack(requeue=True))

    async def _settle(self, message: AbstractIncomingMessage, settling: Awaitable[Any]) -> None:
        """Ack, nack or dead-letter; if the broker cannot take it, requeue the job."""
        try:
            await settling
        except Exception:
            log.warning("could not settle a job; requeueing it", exc_info=True)
            with contextlib.suppress(Exception):  # a closed channel requeues it anyway
                await message.nack(requeue=True)


def _malformed(exc: Exception) -> DomainError:
    return DomainError(ReasonCode.INVALID_PARAMETER_VALUE, f"malformed job: {exc}"[:500])
