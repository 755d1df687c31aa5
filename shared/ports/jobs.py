"""The jobs port: bulk work on codes (generation jobs, import and export)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from shared.domain.model import Code, Job


class Jobs(Protocol):
    async def add_codes(self, codes: Sequence[Code]) -> list[bool]:
        """Insert many codes; for each, whether it was new (False: its scan code exists)."""

    def codes_of(
        self, code_type: str, *, job_id: str | None = None, batch: int = 1000
    ) -> AsyncIterator[list[Code]]:
        """The campaign's codes (or one job's), in batches, in a stable order."""

    async def count_job_codes(self, job_id: str) -> int: ...

    async def create_job(self, job: Job) -> None: ...

    async def get_job(self, job_id: str) -> Job | None: ...

    async def update_job(self, job: Job) -> None:
        """Record a job's progress or end."""
