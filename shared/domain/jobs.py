"""Jobs: `GenerateCodes` runs in the background.

The codes of a campaign that hashes its codes are stored hashed; the plain
codes a job made are kept beside them only until the job's first download or
`codes_until`, whichever comes first, and then deleted: the first download
claims them (`Job.handed_out_at`, one conditional write) before it starts, so
they are handed out once, even to downloads started together; one broken off
takes them with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState
from shared.domain.types import JsonMap


class JobState(StrEnum):
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


@dataclass(frozen=True)
class Job:
    """`GenerateCodes` in the background: `quantity` new codes, `done` so far."""

    job_id: str
    code_type: str
    quantity: int
    code_state: CodeState
    algorithm_name: str
    algorithm_details: JsonMap
    created_at: datetime
    updated_at: datetime
    prefix: str | None = None
    custom_code_info: JsonMap | None = None
    done: int = 0
    state: JobState = JobState.RUNNING
    error: str | None = None
    hash_codes: bool = False  # its campaign's: the plain codes are handed out once
    codes_until: datetime | None = None  # when plain codes kept for the download go
    handed_out_at: datetime | None = None  # when they were downloaded (and went)


def check_download(job: Job, now: datetime) -> None:
    """Refuse a download of a job's codes that cannot give them: a hashed campaign's
    job codes once handed out or expired (410, 90411), or still being made (425, 90425)."""
    if not job.hash_codes:
        return
    if job.handed_out_at is not None:
        raise codes_gone(job)
    if job.codes_until is not None and now >= job.codes_until:
        raise DomainError(
            ReasonCode.GENERATED_CODES_GONE,
            f"the codes of job {job.job_id} expired before they were downloaded",
        )
    if job.state is JobState.RUNNING:
        raise DomainError(
            ReasonCode.GENERATED_CODES_NOT_READY,
            f"job {job.job_id} is still running: its codes are downloadable once, when it ends",
        )


def codes_gone(job: Job) -> DomainError:
    """The refusal of a download after the one that took a hashed campaign's job codes."""
    return DomainError(
        ReasonCode.GENERATED_CODES_GONE,
        f"the codes of job {job.job_id} were handed out already: its campaign keeps"
        " codes hashed, so they are downloadable once",
    )
