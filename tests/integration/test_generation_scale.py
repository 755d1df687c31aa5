"""A million generated codes, stored: a million distinct codes."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.adapters.sqlite import SqliteStore
from shared.clock import new_id, utcnow
from shared.domain.model import Campaign, CodeUseType, Job, JobState
from shared.domain.states import CodeState
from shared.service import generate_codes

NOW = datetime(2026, 11, 23, tzinfo=UTC)
MILLION = 1_000_000


@pytest.mark.timeout(900)
async def test_generating_a_million_codes_stores_a_million_distinct_codes(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "million.sqlite3")
    await store.prepare()
    await store.create_campaign(Campaign("retail", CodeUseType.SINGLE, NOW, NOW))
    job = Job(
        "job-1",
        "retail",
        MILLION,
        CodeState.INACTIVE,
        "FiveByFive",
        {"includeCheck": True},
        NOW,
        NOW,
    )
    await store.create_job(job)
    finished, _ = await generate_codes.generate(store, job, utcnow, new_id)
    await store.close()
    assert (finished.state, finished.done) == (JobState.COMPLETED, MILLION)
    with sqlite3.connect(tmp_path / "million.sqlite3") as db:
        [(rows, distinct)] = db.execute(
            "SELECT count(*), count(DISTINCT scan_norm) FROM codes WHERE job_id = 'job-1'"
        ).fetchall()
    assert rows == distinct == MILLION
