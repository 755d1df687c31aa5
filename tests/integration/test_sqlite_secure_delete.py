"""The embedded store overwrites what it deletes: a generated plain code handed out (or
expired) and deleted is not left behind in the file's free space, whatever the SQLite
library's own default (some builds turn secure_delete on, most leave it off)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.sqlite import SqliteStore
from shared.adapters.sqlite.schema import connect

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PLAIN = {f"code-{n}": f"PLAIN-{n:04d}-QX7VW9TZ" for n in range(50)}


@pytest.fixture(autouse=True)
def off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SQLite library built with secure_delete off, as most are (this one may not be)."""
    opened: Callable[..., sqlite3.Connection] = sqlite3.connect

    def connect_off(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = opened(*args, **kwargs)
        conn.execute("PRAGMA secure_delete = OFF")
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect_off)


def test_every_connection_deletes_securely(tmp_path: Path) -> None:
    conn = connect(tmp_path / "redeem.sqlite3")
    try:
        assert conn.execute("PRAGMA secure_delete").fetchone() == (1,)
    finally:
        conn.close()


async def test_a_deleted_plain_code_is_not_left_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "redeem.sqlite3"
    store = SqliteStore(path)
    await store.prepare()
    await store.keep_plain_codes("job-1", PLAIN, NOW + timedelta(days=1))
    await store.close()  # the last connection: its WAL goes into the file
    assert b"QX7VW9TZ" in path.read_bytes()

    store = SqliteStore(path)
    await store.drop_plain_codes("job-1", NOW)
    assert await store.plain_codes(list(PLAIN), NOW) == {}
    await store.close()

    assert b"QX7VW9TZ" not in path.read_bytes()
