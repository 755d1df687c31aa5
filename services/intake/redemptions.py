"""RedeemCode at the intake: validate, name, publish with confirms; never claim."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog
from prometheus_client import Counter

from services.intake.replies import Replies
from shared import topology, tracing
from shared.clock import Clock, new_id, to_ms
from shared.domain.access import Grant
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.scancode import checked
from shared.domain.throttling import Caller, LockedOut
from shared.messages import RedeemCommand, RedemptionJob, RedemptionRecord
from shared.ports import Publisher, Redemptions
from shared.runtime.failpoints import failpoint
from shared.service.failure_budget import FailureBudget

log = structlog.get_logger()
ACCEPTED = Counter("redemptions_accepted", "Redemptions published to the work queue", ["via"])
# Names a redemption by its user and request id (`shared.domain.redemptions.RedemptionIds`).
NameRedemption = Callable[[str, str], str]


def job_for(
    command: RedeemCommand,
    *,
    clock: Clock,
    ids: NameRedemption,
    reply_to: str | None = None,
    correlation_id: str | None = None,
    key_id: str | None = None,
    client_address: str | None = None,
) -> RedemptionJob:
    """A checked job; raises DomainError for a scan code that cannot exist."""
    checked(command.scan_code)
    request_id = command.request_id or new_id()
    redemption_id = ids(command.user_id, request_id)
    return RedemptionJob.model_validate(
        {
            "redemptionId": redemption_id,
            "requestId": request_id,
            "userId": command.user_id,
            "scanCode": command.scan_code,
            "codeType": command.code_type,
            "customRedemptionInfo": command.custom_redemption_info,
            "acceptedAt": to_ms(clock()),
            "replyTo": reply_to,
            "correlationId": correlation_id or (redemption_id if reply_to else None),
            "keyId": key_id,
            "clientAddress": client_address,
        }
    )


def caller_of(job: RedemptionJob) -> Caller:
    """Who asks, as the failure budget counts them."""
    return Caller(job.userId, job.keyId, job.clientAddress, job.codeType)


async def submit(broker: Publisher, job: RedemptionJob, via: str) -> None:
    """Publish the job with the caller's trace context (`shared.tracing`)."""
    await broker.publish(
        topology.WORK_EXCHANGE,
        topology.REDEEM_ROUTING_KEY,
        job.model_dump_json().encode(),
        message_id=job.redemptionId,
        headers=tracing.carrier(),
    )
    ACCEPTED.labels(via).inc()
    await failpoint("intake-after-publish")


class Redeemer:
    """`RedeemCode` over HTTP: published unless the caller is locked out, then, if the
    caller waits, its outcome."""

    def __init__(
        self,
        broker: Publisher,
        redemptions: Redemptions,
        budget: FailureBudget,
        replies: Replies,
        clock: Clock,
        ids: NameRedemption,
        *,
        max_wait_s: float,
    ) -> None:
        self._ids = ids
        self._broker = broker
        self._redemptions = redemptions
        self._budget = budget
        self._replies = replies
        self._clock = clock
        self._max_wait_s = max_wait_s

    async def redeem(
        self,
        command: RedeemCommand,
        wait_s: float,
        grant: Grant,
        *,
        key_id: str | None = None,
        client_address: str | None = None,
    ) -> tuple[RedemptionJob, RedemptionRecord | None]:
        """The job published and the outcome within `wait_s` (None when not waited for);
        refused (90403) before anything is looked at for a campaign out of the key's
        reach; `LockedOut` when the caller has used up their failure budget."""
        grant.check_campaign(command.code_type)
        wait_s = min(wait_s, self._max_wait_s)
        reply_to = self._replies.queue_name if wait_s else None
        job = job_for(
            command,
            clock=self._clock,
            ids=self._ids,
            reply_to=reply_to,
            key_id=key_id,
            client_address=client_address,
        )
        await self._budget.check(caller_of(job))
        if not wait_s:
            await self._submit(job)
            return job, None
        future = self._replies.expect(job.redemptionId)
        try:
            await self._submit(job)
            return job, await self._outcome(job.redemptionId, future, wait_s)
        finally:
            self._replies.forget(job.redemptionId, future)

    async def retry_after_s(self, job: RedemptionJob) -> int:
        """For a redemption a worker refused as locked out: seconds until its caller has
        room again (at least one)."""
        try:
            await self._budget.check(caller_of(job))
        except LockedOut as locked:
            return locked.retry_after_s
        return 1

    async def _submit(self, job: RedemptionJob) -> None:
        """Publish, or refuse with 503 when the broker did not take it (it may have: the
        same `requestId` sent again is the same redemption)."""
        try:
            await submit(self._broker, job, via="http")
        except Exception as exc:
            log.warning("could not publish a redemption", exc_info=True)
            raise DomainError(
                ReasonCode.SERVICE_UNAVAILABLE,
                "the request could not be queued: send it again with the same requestId",
            ) from exc

    async def _outcome(
        self, redemption_id: str, future: asyncio.Future[RedemptionRecord], wait_s: float
    ) -> RedemptionRecord | None:
        """The outcome as results sends it, or as stored when the wait ends first."""
        try:
            return await asyncio.wait_for(asyncio.shield(future), wait_s)
        except TimeoutError:
            stored = await self._redemptions.get_redemption(redemption_id)
            return RedemptionRecord.of(stored) if stored else None
