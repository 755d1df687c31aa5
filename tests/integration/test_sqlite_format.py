"""Files the embedded store wrote in an earlier format stay readable."""

from __future__ import annotations

import dataclasses
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.adapters.documents import Doc, code_to_doc
from shared.adapters.sqlite import SqliteStore, schema
from shared.adapters.sqlite.codec import sql_of
from shared.adapters.sqlite.coderows import MOVED_COLUMNS
from shared.adapters.sqlite.jsontext import dumps
from shared.adapters.sqlite.schema import CODE_COLUMNS
from shared.clock import to_ms
from shared.domain import model
from shared.domain.conditions import Equals, LowerBound
from shared.domain.model import Campaign, Claim, Code, CodeRef, CodeUseType, HistoryEntry
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import Action, CodeState

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def plant_whole_document(path: Path, code: Code, doc: Doc | None = None) -> None:
    """A code's row as the store wrote it before its fields had columns: its whole
    document in `doc`, and in columns only what it was found by."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO codes (id, code_type, scan_norm, code_state, redeemed_by_user_id,"
            " redeemed_at, job_id, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                code.redemption_code_id,
                code.code_type,
                code.key,
                code.code_state.value,
                code.redeemed_by_user_id,
                to_ms(code.redeemed_at),
                code.job_id,
                dumps(doc if doc is not None else code_to_doc(code)),
            ),
        )
    conn.close()


async def test_a_callers_map_written_unescaped_by_the_previous_format_reads_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    await store.prepare()
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    # The previous format stored a caller's map as given, `{"$date": ...}` included.
    old = {"ms": {"$date": 5}, "huge": {"$date": 1e17}, "plain": {"a.b": [1], "$x": None}}
    code = Code("c1", "gems", "A1", CodeState.AVAILABLE, NOW, NOW)
    plant_whole_document(path, code, code_to_doc(code) | {"customCodeInfo": old})
    read = await store.get_code(CodeRef("gems", "A1"))
    assert read is not None and read.created_at == NOW and read.custom_code_info == old
    exported = [code async for batch in store.codes_of("gems") for code in batch]
    assert [code.custom_code_info for code in exported] == [old]
    await store.close()


def previous_release_file(path: Path) -> None:
    """A file as the release before fields had columns made it."""
    with sqlite3.connect(path) as conn:
        conn.executescript(schema.SCHEMA)
        for table in ("codes", "instances"):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN timer_at INTEGER")
        conn.execute("ALTER TABLE outbox ADD COLUMN set_aside INTEGER NOT NULL DEFAULT 0")
    conn.close()


async def test_codes_of_a_file_from_before_columns_read_back_and_change_as_ever(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    previous_release_file(path)
    made = HistoryEntry(NOW, Action.ACTIVATE, CodeState.INACTIVE, CodeState.AVAILABLE, "op")
    old = Code(
        "c1", "gems", "OLD-1", CodeState.AVAILABLE, NOW, NOW, version=2,
        custom_code_info={"tier": "gold"}, activated_at=NOW, job_id="job-1", history=(made,),
    )  # fmt: skip
    plant_whole_document(path, old)
    store = SqliteStore(path)
    await store.prepare()
    await store.prepare()  # idempotent
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    new = Code("c2", "gems", "NEW-1", CodeState.INACTIVE, NOW, NOW, job_id="job-1")
    assert await store.add_codes([new, dataclasses.replace(old, redemption_code_id="c3")]) == [
        True,
        False,
    ]

    assert await store.get_code(CodeRef("gems", "OLD1")) == old
    assert await store.find_codes("OLD1", limit=2) == [old]
    assert [c async for batch in store.codes_of("gems", job_id="job-1") for c in batch] == [
        old,
        new,
    ]
    change = model.claim(Claim("r1", "u1"), now=NOW, new_id=lambda: "e1")
    claimed = await store.apply(CodeRef("gems", "OLD1"), [change])
    assert claimed is not None and claimed.history[0] == made
    assert await store.get_code(CodeRef("gems", "OLD1")) == claimed
    with sqlite3.connect(path) as conn:
        [(created_at, doc)] = conn.execute("SELECT created_at, doc FROM codes WHERE id = 'c1'")
    conn.close()
    assert created_at == to_ms(NOW) and "tier" not in doc, "written in this format since"
    await store.close()


async def test_a_condition_on_an_attribute_given_a_column_holds_for_rows_of_either_format(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    await store.prepare()
    older = Code("old", "gems", "OLD-1", CodeState.AVAILABLE, NOW, NOW, version=2)
    plant_whole_document(path, older)
    await store.add_code(dataclasses.replace(older, redemption_code_id="new", key="NEW1"))
    await store.add_code(Code("v1", "gems", "NEW-2", CodeState.AVAILABLE, NOW, NOW))
    await store.close()
    where, params = sql_of(
        [Equals("version", 2), LowerBound("created_at", NOW)], CODE_COLUMNS, MOVED_COLUMNS
    )
    with sqlite3.connect(path) as conn:
        found = {row[0] for row in conn.execute(f"SELECT id FROM codes WHERE {where}", params)}
    conn.close()
    assert found == {"old", "new"}


OLD_CODES_TABLE = """
CREATE TABLE codes (
    id TEXT PRIMARY KEY,
    code_type TEXT NOT NULL,
    scan_norm TEXT NOT NULL,
    code_state TEXT NOT NULL,
    redeemed_by_user_id TEXT,
    redeemed_at INTEGER,
    job_id TEXT,
    doc TEXT NOT NULL,
    UNIQUE (code_type, scan_norm)
);
"""


def _plans(path: Path, query: str, *args: object) -> str:
    with sqlite3.connect(path) as conn:
        plan = " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {query}", args))
    conn.close()
    return plan


def _indexes(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    conn.close()
    return names


async def test_scan_codes_are_unique_in_a_campaign_and_found_by_index_in_files_of_either_layout(
    tmp_path: Path,
) -> None:
    new, old = tmp_path / "new.sqlite3", tmp_path / "old.sqlite3"
    with sqlite3.connect(old) as conn:  # a file from before the one index by scan code
        conn.executescript(OLD_CODES_TABLE)
    conn.close()
    for path in (new, old):
        store = SqliteStore(path)
        await store.prepare()
        await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
        await store.create_campaign(Campaign("gold", CodeUseType.SINGLE, NOW, NOW))
        await store.add_code(Code("c1", "gems", "A1", CodeState.AVAILABLE, NOW, NOW))
        await store.add_code(Code("c2", "gold", "A1", CodeState.AVAILABLE, NOW, NOW))
        with pytest.raises(DomainError) as refused:
            await store.add_code(Code("c3", "gems", "A1", CodeState.AVAILABLE, NOW, NOW))
        assert refused.value.reason is ReasonCode.SCAN_CODE_EXISTS
        found = await store.find_codes("A1", limit=10)
        assert sorted(c.redemption_code_id for c in found) == ["c1", "c2"]
        await store.close()
        assert "USING" in _plans(path, "SELECT id FROM codes WHERE scan_norm = ?", "A1")
        assert "USING" in _plans(path, _BY_CAMPAIGN, "A1", "gems")
    assert "codes_by_key" in _indexes(new) and "codes_by_scan" not in _indexes(new)
    assert "codes_by_scan" in _indexes(old) and "codes_by_key" not in _indexes(old)


_BY_CAMPAIGN = "SELECT id FROM codes WHERE scan_norm = ?1 AND code_type = ?2"
