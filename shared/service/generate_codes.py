"""GenerateCodes: new codes of a format, stored until `quantity` are new.

Codes come from a cryptographic random source; uniqueness is the store's
(a collision is simply not added, and another code is drawn). A job records
its progress as it goes and resumes from what is stored after a crash.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable

from shared.clock import Clock
from shared.domain.generation import Format
from shared.domain.model import Code, Job, JobState, NewId, new_code
from shared.ports import Jobs

BATCH = 10_000
RandomBytes = Callable[[int], bytes]


async def generate(
    store: Jobs,
    job: Job,
    clock: Clock,
    new_id: NewId,
    *,
    random_bytes: RandomBytes = secrets.token_bytes,
    batch: int = BATCH,
) -> tuple[Job, list[str]]:
    """Store the job's missing codes; the job as finished, and the codes this call added."""
    fmt = Format.named(job.algorithm_name, job.algorithm_details, prefix=job.prefix)
    done = await store.count_job_codes(job.job_id)
    added: list[str] = []
    while done < job.quantity:
        scans = fmt.generate(min(batch, job.quantity - done), random_bytes)
        codes = [_code(job, scan, clock, new_id) for scan in scans]
        new = [
            code.scan_code
            for code, ok in zip(codes, await store.add_codes(codes), strict=True)
            if ok
        ]
        done += len(new)
        added += new if job.quantity <= batch else []
        job = dataclasses.replace(job, done=done, updated_at=clock())
        await store.update_job(job)
    finished = dataclasses.replace(job, done=done, state=JobState.COMPLETED, updated_at=clock())
    await store.update_job(finished)
    return finished, added


def _code(job: Job, scan: str, clock: Clock, new_id: NewId) -> Code:
    return new_code(
        job.code_type,
        scan,
        job.code_state,
        job.custom_code_info,
        now=clock(),
        new_id=new_id,
        job_id=job.job_id,
    )
