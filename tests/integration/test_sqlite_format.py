"""Files the embedded store wrote in an earlier format stay readable."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from shared.adapters.sqlite import SqliteStore
from shared.domain.model import Campaign, Code, CodeRef, CodeUseType
from shared.domain.states import CodeState

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def test_a_callers_map_written_unescaped_by_the_previous_format_reads_back(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite3"
    store = SqliteStore(path)
    await store.prepare()
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    await store.add_code(Code("c1", "gems", "A1", CodeState.AVAILABLE, NOW, NOW))
    # The previous format stored a caller's map as given, `{"$date": ...}` included.
    old = {"ms": {"$date": 5}, "huge": {"$date": 1e17}, "plain": {"a.b": [1], "$x": None}}
    with sqlite3.connect(path) as conn:
        (text,) = conn.execute("SELECT doc FROM codes").fetchone()
        doc = json.loads(text) | {"customCodeInfo": old}
        conn.execute("UPDATE codes SET doc = ?", (json.dumps(doc),))
    conn.close()
    code = await store.get_code(CodeRef("gems", "A1"))
    assert code is not None and code.created_at == NOW and code.custom_code_info == old
    exported = [code async for batch in store.codes_of("gems") for code in batch]
    assert [code.custom_code_info for code in exported] == [old]
    await store.close()
