"""Jobs: `GenerateCodes` runs in the background."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

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
