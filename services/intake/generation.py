"""`GenerateCodes` at the intake: a job stored, then published for a worker or run at once."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta

from services.intake.export import export_lines
from services.intake.queries import personal_campaign
from services.intake.schemas import GenerateIn
from shared import topology
from shared.clock import Clock
from shared.domain.access import Grant
from shared.domain.codekeys import CodeKeys
from shared.domain.generation import Format, require_entropy
from shared.domain.jobs import check_download, codes_gone
from shared.domain.model import Code, Job, JobState, NewId
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState
from shared.messages import JobMessage
from shared.ports import Publisher, Store
from shared.service import generate_codes

MAX_INLINE = 100


class Generation:
    """Generation jobs: started, looked up, and the codes they made (those of a campaign
    that hashes its codes handed out once, within `codes_ttl_s`)."""

    def __init__(
        self,
        store: Store,
        broker: Publisher,
        clock: Clock,
        new_id: NewId,
        keys: CodeKeys,
        *,
        codes_ttl_s: float,
    ) -> None:
        self._store = store
        self._broker = broker
        self._clock = clock
        self._new_id = new_id
        self._keys = keys
        self._codes_ttl = timedelta(seconds=codes_ttl_s)

    async def generate(self, code_type: str, request: GenerateIn) -> tuple[Job, list[str]]:
        """A job for the codes asked for, for a worker; inline (at most 100) it is run at once.

        A format with too little randomness for the campaign it would fill is refused.
        """
        campaign = await personal_campaign(self._store, code_type)
        if campaign.hash_codes:
            self._keys.check_hashing()
        if request.inline and request.quantity > MAX_INLINE:
            raise DomainError(
                ReasonCode.INVALID_PARAMETER_VALUE,
                f"GenerateCodesInline makes at most {MAX_INLINE} codes",
            )
        fmt = Format.named(
            request.algorithm_name, request.algorithm_details_json, prefix=request.prefix
        )
        inventory = await self._inventory(code_type) + request.quantity
        require_entropy(fmt, inventory, hashed=campaign.hash_codes)
        job = self._job(code_type, request, hashed=campaign.hash_codes)
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
        """The job run at once; its codes are handed out in the answer."""
        done, codes = await generate_codes.generate(
            self._store, job, self._clock, self._new_id, keys=self._keys
        )
        if done.hash_codes:
            done = await self._handed_out(done)
        if done.state is JobState.FAILED:
            raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, done.error or "failed")
        return done, codes

    async def job(self, job_id: str, grant: Grant) -> Job:
        job = await self._store.get_job(job_id)
        if job is None:
            raise DomainError(ReasonCode.REDEMPTION_NOT_FOUND, f"no job {job_id}")
        grant.check_campaign(job.code_type)
        return job

    async def codes(self, job_id: str, fmt: str, grant: Grant) -> AsyncIterator[bytes]:
        """The codes the job made, as CSV or NDJSON lines; a job not there is refused first,
        and so is a download that cannot give a hashed campaign's codes (`check_download`).
        A hashed campaign's are claimed for this download before its first byte, in one
        conditional write: of downloads started together, one gets them, the others 410."""
        job = await self.job(job_id, grant)
        check_download(job, self._clock())
        if job.hash_codes:
            return export_lines(self._handed_out_codes(await self._claim_download(job)), fmt)
        return export_lines(self._store.codes_of(job.code_type, job_id=job.job_id), fmt)

    async def _claim_download(self, job: Job) -> Job:
        """The job, its codes handed out to this download; refused if another took them."""
        now = self._clock()
        claimed = await self._store.hand_out_job(job.job_id, now)
        if claimed is None:
            check_download(await self._store.get_job(job.job_id) or job, now)
            raise codes_gone(job)
        return claimed

    async def _handed_out_codes(self, job: Job) -> AsyncIterator[list[Code]]:
        """A hashed campaign's job codes in plain, from what is kept for the download, which
        claimed them (`_claim_download`); they are deleted when it ends, complete or not:
        a download broken off takes the codes it did not give with it."""
        try:
            async for batch in self._store.codes_of(job.code_type, job_id=job.job_id):
                ids = [c.redemption_code_id for c in batch]
                plain = await self._store.plain_codes(ids, self._clock())
                yield [
                    dataclasses.replace(code, scan_code=plain[code.redemption_code_id])
                    for code in batch
                    if code.redemption_code_id in plain
                ]
        finally:
            await self._store.drop_plain_codes(job.job_id, self._clock())

    async def _handed_out(self, job: Job) -> Job:
        now = self._clock()
        done = dataclasses.replace(job, handed_out_at=now, updated_at=now)
        await self._store.update_job(done)
        await self._store.drop_plain_codes(job.job_id, now)
        return done

    def _job(self, code_type: str, request: GenerateIn, *, hashed: bool) -> Job:
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
            hash_codes=hashed,
            codes_until=now + self._codes_ttl if hashed else None,
        )
