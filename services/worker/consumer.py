"""The work queue, consumed: one redemption job per message.

Ack policy: a job is acked once its outcome is stored. A body that is not a
job is dead-lettered at once with the reason. A job that fails for want of
the store or broker is retried later through a delay queue, the delay growing
with its deliveries; at `max_deliveries` it is ended as failed and
dead-lettered, so that no redemption waits forever. If even that cannot be
recorded (the store is down), a fresh copy of the job goes back through a
delay queue, its deliveries counted from 0 again, and starts over, so that the
job outlives the outage; after `MAX_START_OVERS` of those it is dead-lettered.
Every way out ends in an ack, a delayed retry or a dead-letter with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from opentelemetry.trace import SpanKind
from prometheus_client import Counter, Histogram

from services.worker.redeem import RedeemService
from shared import topology, tracing
from shared.clock import Clock, from_ms
from shared.domain.backoff import RetryPolicy
from shared.domain.model import Redemption, ReplyTo
from shared.domain.reasons import DomainError, ReasonCode
from shared.entrypoints.consumer import Consumer
from shared.messages import RedemptionJob, parse
from shared.ports import Broker, Delivery

log = structlog.get_logger()
MAX_START_OVERS = 20
OUTCOMES = Counter("redemption_outcomes", "Redemptions ended by a worker", ["status", "reason"])
WAITED = Histogram(
    "redemption_queue_wait_seconds",
    "From a redemption's acceptance to a worker taking its job (the work queue's age as seen"
    " by the workers), redeliveries included",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)


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
        key_id=job.keyId,
        client_address=job.clientAddress,
    )


class WorkConsumer(Consumer):
    def __init__(
        self,
        service: RedeemService,
        broker: Broker,
        clock: Clock,
        *,
        max_deliveries: int,
        retry: RetryPolicy = topology.BROKER_RETRY,
    ) -> None:
        super().__init__(broker, topology.WORK_QUEUE, retry=retry)
        self._service = service
        self._clock = clock
        self._max_deliveries = max_deliveries

    async def handle(self, delivery: Delivery) -> None:
        try:
            job = parse(RedemptionJob, delivery.body)
            pending = pending_from_job(job, self._clock)
        except (DomainError, ValueError, OverflowError) as exc:
            error = exc if isinstance(exc, DomainError) else _malformed(exc)
            log.warning("dead-lettering a malformed job", reason=error.message)
            await self.settle(delivery, delivery.dead_letter(error))
            return
        WAITED.observe(max(0.0, (self._clock() - pending.accepted_at).total_seconds()))
        with (
            structlog.contextvars.bound_contextvars(
                redemptionId=job.redemptionId, requestId=job.requestId
            ),
            tracing.accepted(pending.accepted_at),
            tracing.TRACER.start_as_current_span(
                "redeem",
                context=tracing.continued(delivery.headers),
                kind=SpanKind.CONSUMER,
                attributes={
                    "redemption.id": job.redemptionId,
                    "redemption.deliveries": delivery.deliveries,
                },
            ),
        ):
            await self._handle(delivery, pending)

    async def _handle(self, delivery: Delivery, pending: Redemption) -> None:
        deliveries = delivery.deliveries
        if deliveries >= self._max_deliveries:
            await self._give_up(delivery, pending, deliveries)
            return
        try:
            outcome = await self._service.redeem(pending)
        except Exception:
            log.exception("redemption interrupted; retrying later", deliveries=deliveries)
            await self.retry_later(delivery)
            return
        reason = outcome.reason_code.name if outcome.reason_code else ""
        OUTCOMES.labels(outcome.status.value, reason).inc()
        log.info("redemption ended", status=outcome.status.value, reason=reason)
        await self.settle(delivery, delivery.ack())

    async def _give_up(self, delivery: Delivery, pending: Redemption, deliveries: int) -> None:
        error = DomainError(
            ReasonCode.DELIVERY_LIMIT_EXCEEDED,
            f"could not be carried out in {deliveries} deliveries",
        )
        try:
            await self._service.give_up(pending, error)
        except Exception:
            log.exception("could not end the redemption; it starts over later")
            await self._start_over(delivery)
            return
        await self.settle(delivery, delivery.dead_letter(error))

    async def _start_over(self, delivery: Delivery) -> None:
        rounds = start_overs(delivery.headers) + 1
        if rounds > MAX_START_OVERS:
            error = DomainError(
                ReasonCode.DELIVERY_LIMIT_EXCEEDED, f"could not be ended in {rounds} rounds"
            )
            await self.settle(delivery, delivery.dead_letter(error))
            return
        headers = {topology.START_OVER_HEADER: rounds}
        await self.settle(delivery, delivery.start_over(self.backoff_s(rounds), headers))


def start_overs(headers: Mapping[str, Any]) -> int:
    """How many times this job started over before; 0 when the header is not a count."""
    value = headers.get(topology.START_OVER_HEADER, 0)
    try:
        return max(0, int(str(value)))
    except ValueError:
        return 0


def _malformed(exc: Exception) -> DomainError:
    return DomainError(ReasonCode.INVALID_PARAMETER_VALUE, f"malformed job: {exc}"[:500])
