"""The work queue, consumed: one redemption job per message.

Ack policy: a job is acked once its outcome is stored. A body that is not a
job is dead-lettered at once with the reason. A job that fails for want of
the store or broker is requeued after a pause; at `max_deliveries` it is
ended as failed and dead-lettered, so that no redemption waits forever. If
even that cannot be recorded (the store is down), a fresh copy of the job
goes back on the queue after a longer pause and starts over, the broker's
delivery count with it, so that the job outlives the outage; after
`MAX_START_OVERS` of those it is dead-lettered. Every way out ends in an
ack, a delayed retry or a dead-letter with the reason.
"""

from __future__ import annotations

import asyncio
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
MAX_START_OVERS = 20
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
            await self.settle(message, self._broker.dead_letter(message, error))
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
            await self.retry_later(message)
            return
        reason = outcome.reason_code.name if outcome.reason_code else ""
        OUTCOMES.labels(outcome.status.value, reason).inc()
        log.info("redemption ended", status=outcome.status.value, reason=reason)
        await self.settle(message, message.ack())

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
            log.exception("could not end the redemption; it starts over later")
            await self._start_over(message)
            return
        await self.settle(message, self._broker.dead_letter(message, error))

    async def _start_over(self, message: AbstractIncomingMessage) -> None:
        headers = dict(message.headers or {})
        rounds = int(str(headers.get(topology.START_OVER_HEADER, 0))) + 1
        if rounds > MAX_START_OVERS:
            error = DomainError(
                ReasonCode.DELIVERY_LIMIT_EXCEEDED, f"could not be ended in {rounds} rounds"
            )
            await self.settle(message, self._broker.dead_letter(message, error))
            return
        await asyncio.sleep(min(0.5 * 2**rounds, 30.0))
        fresh = {k: v for k, v in headers.items() if not k.startswith(("x-delivery", "x-death"))}
        fresh[topology.START_OVER_HEADER] = rounds
        await self.settle(message, self._put_back(message, fresh))

    async def _put_back(self, message: AbstractIncomingMessage, headers: dict[str, Any]) -> None:
        """A copy of the job on the work queue (confirmed), then this delivery acked."""
        await self._broker.publish(
            topology.WORK_EXCHANGE,
            topology.REDEEM_ROUTING_KEY,
            message.body,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            reply_to=message.reply_to,
            headers=headers,
        )
        await message.ack()



def _malformed(exc: Exception) -> DomainError:
    return DomainError(ReasonCode.INVALID_PARAMETER_VALUE, f"malformed job: {exc}"[:500])
