"""Failure windows: one row per throttled scope, changed inside a write transaction;
rows whose every entry has left its window are deleted as other windows are written."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from shared.adapters.documents import failure_window_from_doc, failure_window_to_doc
from shared.adapters.sqlite.base import SqliteBase
from shared.adapters.sqlite.jsontext import dumps, loads
from shared.adapters.sqlite.schema import transaction
from shared.clock import to_ms
from shared.domain.throttling import FailureWindow, Limit
from shared.ports.throttling import WindowChange


class FailureWindows(SqliteBase):
    async def failure_windows(self, scopes: Sequence[str]) -> list[FailureWindow]:
        marks = ",".join("?" * len(scopes))
        rows = await self._all(f"SELECT doc FROM failure_windows WHERE scope IN ({marks})", *scopes)
        return [failure_window_from_doc(loads(row)) for row in rows]

    async def change_failure_window(
        self, scope: str, limit: Limit, change: WindowChange
    ) -> FailureWindow:
        def apply(conn: sqlite3.Connection) -> FailureWindow:
            with transaction(conn):
                row = conn.execute(
                    "SELECT doc FROM failure_windows WHERE scope = ?", (scope,)
                ).fetchone()
                stored = (
                    failure_window_from_doc(loads(row[0])) if row else FailureWindow(scope, limit)
                )
                changed = change(stored)
                if changed != stored:
                    _write(conn, changed)
                return changed

        return await self._run(apply, writes=True)

    async def clear_failure_window(self, scope: str) -> bool:
        def clear(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                return (
                    conn.execute("DELETE FROM failure_windows WHERE scope = ?", (scope,)).rowcount
                    == 1
                )

        return await self._run(clear, writes=True)

    async def live_failure_windows(
        self, now: datetime, *, after: str | None = None, limit: int = 100
    ) -> list[FailureWindow]:
        rows = await self._all(
            "SELECT doc FROM failure_windows WHERE expires_at > ? AND scope > ?"
            " ORDER BY scope LIMIT ?",
            to_ms(now),
            after or "",
            limit,
        )
        return [failure_window_from_doc(loads(row)) for row in rows]


def _write(conn: sqlite3.Connection, window: FailureWindow) -> None:
    conn.execute("DELETE FROM failure_windows WHERE scope = ?", (window.scope,))
    if not window.entries:
        return
    conn.execute(
        "INSERT INTO failure_windows (scope, expires_at, doc) VALUES (?, ?, ?)",
        (window.scope, to_ms(window.expires_at), dumps(failure_window_to_doc(window))),
    )
    # Windows whose every entry had left them by this one's latest are forgotten.
    latest = max(e.at for e in window.entries)
    conn.execute("DELETE FROM failure_windows WHERE expires_at <= ?", (to_ms(latest),))
