"""GenerateCodes: new codes of a format, stored until `quantity` are new.

Codes come from a cryptographic random source; uniqueness is the store's
(a collision is simply not added, and another code is drawn). A job records
its progress as it goes and resumes from what is stored after a crash.

A job its format cannot carry out ends `Failed` with the reason: a format
with too little randomness for the job (`require_entropy`, which the intake
also checks against the campaign's whole inventory before it starts a job),
or draws that keep finding no new code, which stop after `MAX_BARREN_ROUNDS`
instead of looping.

A job of a campaign that hashes its codes stores them hashed and keeps their
plain forms beside them for the job's one download (`jobs.check_download`),
each kept before its code is added, so that no code is stored without it.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable

from shared.clock import Clock
from shared.domain.codekeys import PLAIN, CodeKeys, shown
from shared.domain.generation import Format, require_entropy
from shared.domain.model import Code, Job, JobState, NewId, new_code
from shared.domain.reasons import DomainError, ReasonCode
from shared.ports import Jobs

BATCH = 10_000
MAX_BARREN_ROUNDS = 3
RandomBytes = Callable[[int], bytes]


async def generate(
    store: Jobs,
    job: Job,
    clock: Clock,
    new_id: NewId,
    *,
    random_bytes: RandomBytes = secrets.token_bytes,
    batch: int = BATCH,
    keys: CodeKeys = PLAIN,
) -> tuple[Job, list[str]]:
    """Store the job's missing codes; the job as finished (or failed, with why), and the
    codes this call added (in plain, as they are to be typed)."""
    try:
        fmt = Format.named(job.algorithm_name, job.algorithm_details, prefix=job.prefix)
        require_entropy(fmt, job.quantity, hashed=job.hash_codes)
        job, added = await _fill(store, job, fmt, _Maker(clock, new_id, keys), random_bytes, batch)
    except DomainError as refused:
        return await _fail(store, job, refused, clock), []
    finished = dataclasses.replace(job, state=JobState.COMPLETED, updated_at=clock())
    await store.update_job(finished)
    return finished, added


async def _fill(
    store: Jobs,
    job: Job,
    fmt: Format,
    make: _Maker,
    random_bytes: RandomBytes,
    batch: int,
) -> tuple[Job, list[str]]:
    done = await store.count_job_codes(job.job_id)
    added: list[str] = []
    barren = 0
    clock = make.clock
    while done < job.quantity:
        scans = [
            shown(scan, hashed=False)
            for scan in fmt.generate(min(batch, job.quantity - done), random_bytes)
        ]
        codes = [make.code(job, scan) for scan in scans]
        if job.hash_codes and job.codes_until is not None:
            kept = {code.redemption_code_id: scan for code, scan in zip(codes, scans, strict=True)}
            await store.keep_plain_codes(job.job_id, kept, job.codes_until)
        new = [scan for scan, ok in zip(scans, await store.add_codes(codes), strict=True) if ok]
        barren = 0 if new else barren + 1
        if barren >= MAX_BARREN_ROUNDS:
            raise DomainError(
                ReasonCode.INVALID_PARAMETER_VALUE,
                f"{barren} rounds of draws made no new code: the format cannot make"
                f" {job.quantity - done} more codes for this campaign",
            )
        done += len(new)
        added += new if job.quantity <= batch else []
        job = dataclasses.replace(job, done=done, updated_at=clock())
        await store.update_job(job)
    return job, added


async def _fail(store: Jobs, job: Job, refused: DomainError, clock: Clock) -> Job:
    done = await store.count_job_codes(job.job_id)
    failed = dataclasses.replace(
        job, done=done, state=JobState.FAILED, error=refused.message, updated_at=clock()
    )
    await store.update_job(failed)
    return failed


@dataclasses.dataclass(frozen=True)
class _Maker:
    """Makes a job's codes."""

    clock: Clock
    new_id: NewId
    keys: CodeKeys

    def code(self, job: Job, scan: str) -> Code:
        return new_code(
            job.code_type,
            scan,
            job.code_state,
            job.custom_code_info,
            now=self.clock(),
            new_id=self.new_id,
            job_id=job.job_id,
            keys=self.keys,
            hashed=job.hash_codes,
        )
