"""`GenerateCodes` at the intake: a job stored, then published for a worker or run at once."""

from __future__ import annotations

from collections.abc import AsyncIterator

from services.intake.bulk import export_lines
from services.intake.queries import personal_campaign
from services.intake.schemas import GenerateIn
from shared import topology
from shared.clock import Clock
from shared.domain.generation import Format, require_entropy
from shared.domain.model import Job, JobState, NewId
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState
from shared.messages import JobMessage
from shared.ports import Publisher, Store
from shared.service import generate_codes

MAX_INLINE = 100


class Generation:
    """Generation jobs: started, looked up, and the codes they made."""

    def __init__(self, store: Store, broker: Publisher, clock: Clock, new_id: NewId) -> None:
        self._store = store
        self._broker = broker
        self._clock = clock
        self._new_id = new_id

    async def generate(self, code_type: str, request: GenerateIn) -> tuple[Job, list[str]]:
        """A job for the codes asked for, for a worker; inline (at most 100) it is run at once.

        A format with too little randomness for the campaign it would fill is refused.
        """
        await personal_campaign(self._store, code_type)
        if request.inline and request.quantity > MAX_INLINE:
            raise DomainError(
                ReasonCode.INVALID_PARAMETER_VALUE,
                f"GenerateCodesInline makes at most {MAX_INLINE} codes",
            )
        fmt = Format.named(
            request.algorithm_name, request.algorithm_details_json, prefix=request.prefix
        )
        require_entropy(fmt, await self._inventory(code_type) + request.quantity)
        job = self._job(code_type, request)
        await self._store.create_job(job)
        if request.inline:
            return await self._inline(job)
        message = JobMessage(jobId=job.job_id).model_dump_json().encode()
        await self._broker.publish(
            topology.WORK_EXCHANGE, topology.JOB_ROUTING_KEY, message, message_id=job.job_id
        )
        return job, []

    async def _inventory(self, code_type: str) -> int:
        return sum((await self._store.inventory(code_type, shared=False)).values())

    async def _inline(self, job: Job) -> tuple[Job, list[str]]:
        done, codes = await generate_codes.generate(self._store, job, self._clock, self._new_id)
        if done.state is JobState.FAILED:
            raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, done.error or "failed")
        return done, codes

    async def job(self, job_id: str) -> Job:
        job = await self._store.get_job(job_id)
        if job is None:
            raise DomainError(ReasonCode.REDEMPTION_NOT_FOUND, f"no job {job_id}")
        return job

    async def codes(self, job_id: str, fmt: str) -> AsyncIterator[bytes]:
        """The codes the job made, as CSV or NDJSON lines; a job not there is refused first."""
        job = await self.job(job_id)
        return export_lines(self._store.codes_of(job.code_type, job_id=job.job_id), fmt)

    def _job(self, code_type: str, request: GenerateIn) -> Job:
        now = self._clock()
        return Job(
            self._new_id(),
            code_type,
            request.quantity,
            CodeState(request.code_state),
            request.algorithm_name,
            request.algorithm_details_json,
            now,
            now,
            prefix=request.prefix,
            custom_code_info=request.custom_code_info,
        )
