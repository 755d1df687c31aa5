"""The store contract for codes safe at rest, on every store: a hashed code is found by
its key, and its plain form is nowhere in what the store holds, neither in the code,
its events, nor the redemption; a job's plain codes are kept until dropped or expired,
and purged when expired; a job's codes are handed out once, to one of any number of
downloads started together; a redemption is keyed as the code it found.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from shared.adapters.documents import Doc
from shared.adapters.mongodb import MongoStore
from shared.adapters.sqlite import SqliteStore
from shared.clock import new_id
from shared.domain import model
from shared.domain.codekeys import CodeKeys
from shared.domain.model import (
    Campaign,
    Claim,
    CodeRef,
    CodeUseType,
    Job,
    JobState,
    Redemption,
    new_code,
)
from shared.domain.states import CodeState
from shared.ports import Store
from shared.runtime.settings import Settings
from shared.service import generate_codes
from tests.fakes import FakeStore
from tests.unit.intake_harness import RecordingBroker, intake_client

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
KEYS = CodeKeys("contract-secret")
PLAIN_CODE = "VFAOK-YU7GY-Y4IDA"
# What must never be stored: the code in any spelling but its last four characters.
SECRET_PART = "YU7GY"


async def everything_stored(
    store: Store, mongo_client: AsyncMongoClient[Doc], db_name: str, tmp_path: Path
) -> str:
    """Every document or row the store holds, as text."""
    if isinstance(store, MongoStore):
        db = mongo_client[db_name]
        docs = [doc for name in await db.list_collection_names() async for doc in db[name].find({})]
        return repr(docs)
    if isinstance(store, SqliteStore):
        with sqlite3.connect(tmp_path / "store.sqlite3") as conn:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            return json.dumps([conn.execute(f"SELECT * FROM {t}").fetchall() for t in tables])
    assert isinstance(store, FakeStore)
    return repr(vars(store))


async def test_a_hashed_code_is_found_by_its_key_and_never_stored_plain(
    any_store: Store, mongo_client: AsyncMongoClient[Doc], db_name: str, tmp_path: Path
) -> None:
    store = any_store
    await store.create_campaign(Campaign("vault", CodeUseType.SINGLE, NOW, NOW, hash_codes=True))
    code = new_code(
        "vault",
        PLAIN_CODE,
        CodeState.AVAILABLE,
        None,
        now=NOW,
        new_id=lambda: "c1",
        keys=KEYS,
        hashed=True,
    )
    await store.add_code(code)
    key = KEYS.key(PLAIN_CODE, hashed=True)
    ref = CodeRef("vault", key)

    found = await store.get_code(ref)
    assert found is not None and found.scan_code == "••••4IDA" and found.key == key
    assert [c.redemption_code_id for c in await store.find_codes(key, limit=2)] == ["c1"]
    assert await store.find_codes("VFAOKYU7GYY4IDA", limit=2) == []

    pending = model.kept(Redemption("r1", "q1", "alice", PLAIN_CODE, NOW, NOW, "vault"), KEYS)
    assert await store.open_redemption(pending) is None
    change = model.claim(Claim("r1", "alice"), now=NOW, new_id=lambda: "e1")
    claimed = await store.apply(ref, [change])
    assert claimed is not None and claimed.key == key and claimed.scan_code == "••••4IDA"
    events = await store.pending_events(limit=10)
    assert [p.code.scan_code for item in events for p in item.events] == ["••••4IDA"]
    stored = await store.get_redemption("r1")
    assert stored is not None and (stored.scan_code, stored.code_key) == ("••••4IDA", key)

    assert SECRET_PART not in await everything_stored(store, mongo_client, db_name, tmp_path)


async def test_a_jobs_plain_codes_are_kept_until_dropped_or_expired(
    any_store: Store, mongo_client: AsyncMongoClient[Doc], db_name: str, tmp_path: Path
) -> None:
    store = any_store
    until = NOW + timedelta(hours=1)
    await store.keep_plain_codes("job-1", {"c1": "PLAIN-AAAA1", "c2": "PLAIN-AAAA2"}, until)
    await store.keep_plain_codes("job-1", {"c1": "PLAIN-AAAA1"}, until)  # a redelivery
    await store.keep_plain_codes("job-2", {"c3": "PLAIN-BBBB3"}, NOW + timedelta(minutes=1))

    assert await store.plain_codes(["c1", "c2", "c3", "c9"], NOW) == {
        "c1": "PLAIN-AAAA1",
        "c2": "PLAIN-AAAA2",
        "c3": "PLAIN-BBBB3",
    }
    later = NOW + timedelta(minutes=2)
    assert await store.plain_codes(["c1", "c3"], later) == {"c1": "PLAIN-AAAA1"}

    await store.drop_plain_codes("job-1", later)  # and, with it, job-2's expired one
    assert await store.plain_codes(["c1", "c2", "c3"], NOW) == {}
    assert "PLAIN-" not in await everything_stored(store, mongo_client, db_name, tmp_path)


@pytest.mark.parametrize("hashed", [False, True])
async def test_a_codes_key_is_unique_in_its_campaign(any_store: Store, hashed: bool) -> None:
    store = any_store
    await store.create_campaign(Campaign("vault", CodeUseType.SINGLE, NOW, NOW, hash_codes=hashed))

    def code(scan: str, code_id: str) -> model.Code:
        return new_code(
            "vault",
            scan,
            CodeState.INACTIVE,
            None,
            now=NOW,
            new_id=lambda: code_id,
            keys=KEYS,
            hashed=hashed,
        )

    assert await store.add_codes([code(PLAIN_CODE, "c1"), code("vfaok yu7gy y4ida", "c2")]) == [
        True,
        False,
    ]


FAR = datetime(2100, 1, 1, tzinfo=UTC)  # later than any TTL monitor's clock: only purges delete


async def test_expired_plain_codes_are_purged_from_every_store(
    any_store: Store, mongo_client: AsyncMongoClient[Doc], db_name: str, tmp_path: Path
) -> None:
    """No download needed: a store without a TTL monitor deletes them when purged (the
    worker's timer loop purges every minute), as MongoDB's TTL index does."""
    store = any_store
    await store.keep_plain_codes("job-1", {"c1": "PLAIN-AAAA1"}, FAR + timedelta(minutes=1))
    await store.keep_plain_codes("job-2", {"c2": "PLAIN-BBBB2"}, FAR + timedelta(hours=1))

    assert await store.purge_plain_codes(FAR) == 0
    assert "PLAIN-AAAA1" in await everything_stored(store, mongo_client, db_name, tmp_path)
    assert await store.purge_plain_codes(FAR + timedelta(minutes=1)) == 1
    stored = await everything_stored(store, mongo_client, db_name, tmp_path)
    assert "PLAIN-AAAA1" not in stored and "PLAIN-BBBB2" in stored
    assert await store.purge_plain_codes(FAR + timedelta(days=1)) == 1
    assert "PLAIN-" not in await everything_stored(store, mongo_client, db_name, tmp_path)


def hashed_job(job_id: str) -> Job:
    return Job(
        job_id,
        "vault",
        3,
        CodeState.AVAILABLE,
        "FiveByFive",
        {},
        NOW,
        NOW,
        hash_codes=True,
        codes_until=FAR,
    )


async def test_of_concurrent_hand_outs_of_a_jobs_codes_exactly_one_wins(any_store: Store) -> None:
    store = any_store
    await store.create_job(hashed_job("job-1"))
    later = NOW + timedelta(seconds=1)
    won = await asyncio.gather(*(store.hand_out_job("job-1", later) for _ in range(8)))
    assert [job.handed_out_at for job in won if job is not None] == [later]
    stored = await store.get_job("job-1")
    assert stored is not None and stored.handed_out_at == later
    assert await store.hand_out_job("job-1", later + timedelta(seconds=1)) is None
    assert await store.hand_out_job("no-such-job", later) is None


async def test_of_two_downloads_started_together_exactly_one_gets_the_codes(
    any_store: Store, mongo_client: AsyncMongoClient[Doc], db_name: str, tmp_path: Path
) -> None:
    store = any_store
    settings = Settings(api_keys="admin-key=admin", context_secret="secret", code_secret="s")
    admin = {"Authorization": "Bearer admin-key"}
    async with intake_client(store, RecordingBroker(), settings, lambda: NOW) as (api, _):
        made = await api.post(
            "/v1/campaigns", json={"codeType": "vault", "hashCodes": True}, headers=admin
        )
        assert made.status_code in (200, 201), made.text
        started = await api.post(
            "/v1/campaigns/vault/codes/generate",
            json={"quantity": 300, "codeState": "Available"},
            headers=admin,
        )
        assert started.status_code == 202, started.text
        job = await store.get_job(started.json()["jobId"])
        assert job is not None
        done, _ = await generate_codes.generate(
            store, job, lambda: NOW, new_id, keys=CodeKeys("s"), batch=100
        )
        assert done.state is JobState.COMPLETED

        url = f"/v1/jobs/{job.job_id}/codes?format=ndjson"
        downloads = await asyncio.gather(*(api.get(url, headers=admin) for _ in range(2)))

    by_status = sorted(downloads, key=lambda answer: answer.status_code)
    assert [answer.status_code for answer in by_status] == [200, 410]
    codes = [json.loads(line)["scanCode"] for line in by_status[0].text.splitlines()]
    assert len(set(codes)) == 300 and not any("•" in code for code in codes)
    assert by_status[1].json()["reasonCode"] == 90411
    stored = await everything_stored(store, mongo_client, db_name, tmp_path)
    assert not any(code in stored for code in codes[:10]), "the plain codes went with it"


async def test_a_redemption_is_keyed_as_the_code_it_found(any_store: Store) -> None:
    store = any_store
    typed = Redemption("r1", "q1", "alice", PLAIN_CODE, NOW, NOW)
    opened = model.kept(typed, KEYS)
    assert await store.open_redemption(opened) is None
    await store.key_redemption("r1", "VFAOKYU7GYY4IDA")
    stored = await store.get_redemption("r1")
    assert stored == dataclasses.replace(opened, code_key="VFAOKYU7GYY4IDA")
    assert stored is not None and stored.scan_code == "••••4IDA"
