"""The base every aggregate's mixin subclasses: one thread that owns the
connection, and the statements more than one aggregate runs on it."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from shared.adapters.sqlite.codec import select_redemption, write_redemption
from shared.adapters.sqlite.schema import connect, transaction
from shared.domain.model import Redemption

T = TypeVar("T")


class SqliteBase:
    """The file's path and the connection's thread, which each aggregate's mixin runs on."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite")
        self._conn: sqlite3.Connection | None = None

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, lambda: fn(self._connection()))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(self._path)
        return self._conn

    async def _write(self, statement: str, *args: object) -> None:
        def write(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute(statement, args)

        await self._run(write)

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

        return await self._run(update)
