"""The jobs queue, consumed: background `GenerateCodes` runs.

Ack policy: a job is acked once it is stored as finished (or found not
running). A body that is not a job is dead-lettered at once with the reason. A
job a worker dies in is redelivered and resumes from the codes already stored;
one that fails is retried later through a delay queue, the delay growing with
its deliveries; at `max_deliveries` it is marked failed and dead-lettered with
the reason, and dead-lettered all the same when it cannot even be marked (the
store down), so that its deliveries stay bounded.
"""

from __future__ import annotations

import dataclasses

import structlog

from shared import topology
from shared.clock import Clock
from shared.domain.backoff import RetryPolicy
from shared.domain.codekeys import PLAIN, CodeKeys
from shared.domain.model import JobState, NewId
from shared.domain.reasons import DomainError, ReasonCode
from shared.entrypoints.consumer import Consumer
from shared.messages import JobMessage, parse
from shared.ports import Broker, Delivery, Jobs
from shared.service import generate_codes

log = structlog.get_logger()


class JobConsumer(Consumer):
    def __init__(
        self,
        store: Jobs,
        broker: Broker,
        clock: Clock,
        new_id: NewId,
        *,
        max_deliveries: int,
        retry: RetryPolicy = topology.BROKER_RETRY,
        keys: CodeKeys = PLAIN,
    ) -> None:
        super().__init__(broker, topology.JOBS_QUEUE, retry=retry)
        self._keys = keys
        self._store = store
        self._clock = clock
        self._new_id = new_id
        self._max_deliveries = max_deliveries

    async def handle(self, delivery: Delivery) -> None:
        try:
            job_id = parse(JobMessage, delivery.body).jobId
        except DomainError as error:
            await self.settle(delivery, delivery.dead_letter(error))
            return
        with structlog.contextvars.bound_contextvars(jobId=job_id):
            if delivery.deliveries >= self._max_deliveries:
                await self._give_up(delivery, job_id)
                return
            try:
                await self._run(delivery, job_id)
            except Exception:
                log.exception("generation interrupted; retrying later")
                await self.retry_later(delivery)

    async def _run(self, delivery: Delivery, job_id: str) -> None:
        job = await self._store.get_job(job_id)
        if job is None or job.state is not JobState.RUNNING:
            await self.settle(delivery, delivery.ack())
            return
        finished, _ = await generate_codes.generate(
            self._store, job, self._clock, self._new_id, keys=self._keys
        )
        log.info("generation finished", done=finished.done)
        await self.settle(delivery, delivery.ack())

    async def _give_up(self, delivery: Delivery, job_id: str) -> None:
        error = DomainError(ReasonCode.DELIVERY_LIMIT_EXCEEDED, "the job kept failing")
        try:
            job = await self._store.get_job(job_id)
            if job is None or job.state is not JobState.RUNNING:
                await self.settle(delivery, delivery.ack())
                return
            failed = dataclasses.replace(
                job, state=JobState.FAILED, error=error.message, updated_at=self._clock()
            )
            await self._store.update_job(failed)
        except Exception:
            log.exception("could not mark the job failed; dead-lettering it all the same")
        await self.settle(delivery, delivery.dead_letter(error))
