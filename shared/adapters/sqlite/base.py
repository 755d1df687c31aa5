"""The base every aggregate's mixin subclasses: one thread that owns the
connection (and gives waiting writes one commit), and the statements more than
one aggregate runs on it."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from shared.adapters.sqlite.codec import select_redemption, write_redemption
from shared.adapters.sqlite.connection import ConnectionThread
from shared.adapters.sqlite.schema import transaction
from shared.domain.model import Redemption

T = TypeVar("T")


class SqliteBase:
    """The file's path and the connection's thread, which each aggregate's mixin runs on."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._connection = ConnectionThread(path)

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, writes: bool = False) -> T:
        """`fn` on the connection's thread; one that `writes` (in a `transaction`) may
        share its commit with others waiting, and returns once that commit is on disk."""
        return await self._connection.call(fn, writes=writes)

    async def _write(self, statement: str, *args: object) -> None:
        def write(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute(statement, args)

        await self._run(write, writes=True)

    async def _one(self, query: str, *args: object) -> Any:
        def read(conn: sqlite3.Connection) -> Any:
            row = conn.execute(query, args).fetchone()
            return row[0] if row else None

        return await self._run(read)

    async def _all(self, query: str, *args: object) -> list[Any]:
        return await self._run(lambda conn: [row[0] for row in conn.execute(query, args)])

    async def _update_redemption(
        self, redemption_id: str, change: Callable[[Redemption], Redemption]
    ) -> Redemption | None:
        def update(conn: sqlite3.Connection) -> Redemption | None:
            with transaction(conn):
                stored = select_redemption(conn, redemption_id)
                if stored is None:
                    return None
                changed = change(stored)
                if changed != stored:
                    write_redemption(conn, changed, insert=False)
                return changed

        return await self._run(update, writes=True)
