"""The jobs queue, consumed: background `GenerateCodes` runs.

Ack policy: a job is acked once it is stored as finished. A job a worker
dies in is redelivered and resumes from the codes already stored; one that
fails is requeued after a pause; at `max_deliveries` it is marked failed and
dead-lettered with the reason.
"""

from __future__ import annotations

import dataclasses

import structlog
from aio_pika.abc import AbstractIncomingMessage

from shared import codegen, topology
from shared.adapters.rabbitmq import Broker, Consumer, delivery_count
from shared.clock import Clock
from shared.domain.model import JobState, NewId
from shared.domain.reasons import DomainError, ReasonCode
from shared.messages import JobMessage, parse
from shared.ports import Jobs

log = structlog.get_logger()


class JobConsumer(Consumer):
    def __init__(
        self, store: Jobs, broker: Broker, clock: Clock, new_id: NewId, *, max_deliveries: int
    ) -> None:
        self._store = store
        super().__init__(broker, topology.JOBS_QUEUE)
        self._clock = clock
        self._new_id = new_id
        self._max_deliveries = max_deliveries

    async def handle(self, message: AbstractIncomingMessage) -> None:
        try:
            job_id = parse(JobMessage, message.body).jobId
        except DomainError as error:
            await self.settle(message, self._broker.dead_letter(message, error))
            return
        with structlog.contextvars.bound_contextvars(jobId=job_id):
            try:
                await self._run(message, job_id)
            except Exception:
                log.exception("generation interrupted; requeueing")
                await self.retry_later(message)

    async def _run(self, message: AbstractIncomingMessage, job_id: str) -> None:
        job = await self._store.get_job(job_id)
        if job is None or job.state is not JobState.RUNNING:
            await self.settle(message, message.ack())
            return
        if delivery_count(message) >= self._max_deliveries:
            error = DomainError(ReasonCode.DELIVERY_LIMIT_EXCEEDED, "the job kept failing")
            failed = dataclasses.replace(
                job, state=JobState.FAILED, error=error.message, updated_at=self._clock()
            )
            await self._store.update_job(failed)
            await self.settle(message, self._broker.dead_letter(message, error))
            return
        finished, _ = await codegen.generate(self._store, job, self._clock, self._new_id)
        log.info("generation finished", done=finished.done)
        await self.settle(message, message.ack())
