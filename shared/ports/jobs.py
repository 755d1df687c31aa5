"""The jobs port: bulk work on codes (generation jobs, import and export)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
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

    async def hand_out_job(self, job_id: str, now: datetime) -> Job | None:
        """Mark a job's codes handed out at `now`, in one conditional write that only one
        of any number of concurrent callers wins: the job as changed, or None if they were
        handed out already (or there is no such job)."""

    async def keep_plain_codes(
        self, job_id: str, codes: Mapping[str, str], until: datetime
    ) -> None:
        """Keep the plain codes (by code id) a job made for a campaign that hashes codes,
        for its one download, until `until` at the latest. Kept codes that expired are
        deleted (on MongoDB by its TTL monitor, elsewhere by `purge_plain_codes`)."""

    async def purge_plain_codes(self, now: datetime) -> int:
        """Delete every kept plain code that expired by `now`; how many went."""

    async def plain_codes(self, code_ids: Sequence[str], now: datetime) -> dict[str, str]:
        """The plain codes kept for these code ids (by id), none that expired by `now`."""

    async def drop_plain_codes(self, job_id: str, now: datetime) -> None:
        """Delete the plain codes kept for a job, and every kept one expired by `now`."""
