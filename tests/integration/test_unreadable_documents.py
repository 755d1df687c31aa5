"""A stored document that cannot be read back is set aside; it never stalls the others."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pymongo import AsyncMongoClient

from shared.adapters.documents import Doc
from shared.adapters.mongodb import MongoStore
from shared.adapters.sqlite import SqliteStore
from shared.clock import to_ms
from shared.domain import attempts, model
from shared.domain.model import Campaign, Claim, Code, CodeRef, CodeUseType
from shared.domain.states import CodeState
from shared.ports import Store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=1)


async def plant_mongodb(client: AsyncMongoClient[Doc], db: str) -> None:
    bad_event = {"eventId": "bad-1", "name": "bogus", "occurredAt": EARLIER, "code": {}}
    await client[db]["codes"].insert_one(
        {
            "_id": "bad",
            "codeType": "gems",
            "scanNorm": "BAD",
            "codeState": "Bogus",
            "timerAt": EARLIER,
            "outbox": [bad_event],
            "outboxPending": 1,
            "outboxSince": EARLIER,
        }
    )


def plant_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO codes (id, code_type, scan_norm, code_state, doc, timer_at)"
            " VALUES ('bad', 'gems', 'BAD', 'Bogus', '{\"codeState\": \"Bogus\"}', ?)",
            (to_ms(EARLIER),),
        )
        conn.execute(
            "INSERT INTO outbox (event_id, code_id, shared, doc) VALUES ('bad-1', 'bad', 0, '{}')"
        )


@pytest.fixture(params=["mongodb", "sqlite"])
async def poisoned(
    request: pytest.FixtureRequest,
    mongo_client: AsyncMongoClient[Doc],
    db_name: str,
    tmp_path: Path,
) -> AsyncIterator[Store]:
    """A store holding one unreadable code, with an event and a timer, before good ones."""
    store: Store
    if request.param == "mongodb":
        store = MongoStore(mongo_client[db_name])
        await store.prepare()
        await plant_mongodb(mongo_client, db_name)
    else:
        store = SqliteStore(tmp_path / "store.sqlite3")
        await store.prepare()
        plant_sqlite(tmp_path / "store.sqlite3")
    yield store
    await store.close()


async def claim_a_good_code(store: Store) -> Code:
    campaign = Campaign("gems", CodeUseType.SINGLE, NOW, NOW, handler="h")
    await store.create_campaign(campaign)
    await store.add_code(Code("good", "gems", "GOOD", CodeState.AVAILABLE, NOW, NOW))
    started = attempts.started(campaign, NOW, 10.0)
    change = model.claim(Claim("r1", "u1"), now=NOW, new_id=lambda: "ev-1", attempt_fields=started)
    claimed = await store.apply(CodeRef("gems", "GOOD"), [change])
    assert claimed is not None
    return claimed


async def test_the_relay_timers_and_exports_pass_an_unreadable_code_by(poisoned: Store) -> None:
    good = await claim_a_good_code(poisoned)
    passes = [await poisoned.pending_events(limit=1) for _ in range(3)]
    # Set aside on the first pass, and never in the way again.
    assert [[item.code_id for item in pending] for pending in passes[1:]] == [["good"]] * 2
    assert good.timer_at is not None
    scans = [await poisoned.take_due(good.timer_at, 10.0, limit=1) for _ in range(2)]
    assert [d.code.redemption_code_id for due in scans for d in due] == ["good"]
    exported = [code async for batch in poisoned.codes_of("gems") for code in batch]
    assert [code.redemption_code_id for code in exported] == ["good"]
