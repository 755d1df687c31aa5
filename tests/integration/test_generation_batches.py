"""A job of many batches stores as many distinct codes as it asked for (a million of
them are `bench.bulk`'s)."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from shared.adapters.sqlite import SqliteStore
from shared.clock import new_id, utcnow
from shared.domain.model import Campaign, CodeUseType, Job, JobState
from shared.domain.states import CodeState
from shared.service import generate_codes

NOW = datetime(2026, 11, 23, tzinfo=UTC)
CODES = 12 * generate_codes.BATCH + 7  # batches, and a last one short


async def test_a_job_of_many_batches_stores_as_many_distinct_codes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "codes.sqlite3")
    await store.prepare()
    await store.create_campaign(Campaign("retail", CodeUseType.SINGLE, NOW, NOW))
    job = Job(
        "job-1",
        "retail",
        CODES,
        CodeState.INACTIVE,
        "FiveByFive",
        {"includeCheck": True},
        NOW,
        NOW,
    )
    await store.create_job(job)
    finished, _ = await generate_codes.generate(store, job, utcnow, new_id)
    await store.close()
    assert (finished.state, finished.done) == (JobState.COMPLETED, CODES)
    with sqlite3.connect(tmp_path / "codes.sqlite3") as db:
        [(rows, distinct)] = db.execute(
            "SELECT count(*), count(DISTINCT scan_norm) FROM codes WHERE job_id = 'job-1'"
        ).fetchall()
    assert rows == distinct == CODES
