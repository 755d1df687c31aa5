"""Bulk: generation jobs, import and export of codes."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import json
import operator
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.adapters.documents import job_from_doc, job_to_doc
from shared.adapters.sqlite.base import SqliteBase
from shared.adapters.sqlite.codec import INSERT_CODE
from shared.adapters.sqlite.coderows import (
    CODE_SELECT,
    ROW_COLUMNS,
    Row,
    code_of_row,
    code_row,
    remembering,
)
from shared.adapters.sqlite.jsontext import dumps, loads
from shared.adapters.sqlite.schema import transaction
from shared.adapters.unreadable import readable
from shared.clock import from_ms, to_ms
from shared.domain.generation import collection_paused
from shared.domain.model import Code, Job


@functools.cache
def _insert_rows(varying: tuple[int, ...]) -> str:
    """An insert of many codes' rows: the columns at `varying` (indexes in `ROW_COLUMNS`) from
    a JSON array (parameter 1) of their values for each row, the others' values the same
    for every row (the parameters after it, in their order)."""
    constant = itertools.count(2)
    values = (
        f"json_extract(value, '$[{varying.index(n)}]')" if n in varying else f"?{next(constant)}"
        for n in range(len(ROW_COLUMNS))
    )
    return f"INSERT INTO codes ({CODE_SELECT}) SELECT {', '.join(values)} FROM json_each(?1)"


def _batch(rows: list[Row]) -> tuple[str, tuple[object, ...]]:
    """One statement inserting `rows`, and its parameters: the values a column has for
    every row are given once, the others for each row in one JSON array, for SQLite to
    read (a statement with no values of its own for each row, run without the
    interpreter's lock: the caller makes its next batch meanwhile). In the order of the
    unique index, each of its pages is visited once."""
    columns = list(zip(*sorted(rows, key=operator.itemgetter(2, 1)), strict=True))
    varying = tuple(  # ids always: a JSON array of a row each, even of one row
        n for n, column in enumerate(columns) if n == 0 or column.count(column[0]) != len(column)
    )
    each = json.dumps(list(zip(*(columns[n] for n in varying), strict=True)), separators=(",", ":"))
    shared = (column[0] for n, column in enumerate(columns) if n not in varying)
    return _insert_rows(varying), (each, *shared)


class Jobs(SqliteBase):
    """Generation jobs, and codes added, read and counted in batches."""

    async def add_codes(self, codes: Sequence[Code]) -> list[bool]:
        if not codes:
            return []
        ms = remembering(to_ms)  # the codes of a batch share a few instants
        with collection_paused():
            rows = [code_row(code, ms) for code in codes]
            statement, args = _batch(rows)

        def insert(conn: sqlite3.Connection) -> list[bool]:
            with transaction(conn):
                conn.execute("SAVEPOINT batch")
                try:
                    conn.execute(statement, args)
                    return [True] * len(rows)
                except sqlite3.IntegrityError:  # some are there: one at a time, then
                    conn.execute("ROLLBACK TO batch")
                    return [_inserted(conn, row) for row in rows]
                finally:
                    conn.execute("RELEASE batch")

        return await self._run(insert, writes=True)

    async def codes_of(
        self, code_type: str, *, job_id: str | None = None, batch: int = 1000
    ) -> AsyncIterator[list[Code]]:
        column, value = ("job_id", job_id) if job_id else ("code_type", code_type)
        query = f"SELECT {CODE_SELECT} FROM codes WHERE {column} = ? AND id > ? ORDER BY id LIMIT ?"

        def page(after: str) -> Awaitable[list[Row]]:
            return self._run(functools.partial(_fetch_all, query=query, args=(value, after, batch)))

        # The next page is read while this one is decoded and used.
        reading = asyncio.ensure_future(page(""))
        try:
            while rows := await reading:
                reading = asyncio.ensure_future(page(rows[-1][0]))
                yield _decoded(rows)
        finally:  # a reader that stopped early leaves the page it did not take
            if not reading.cancel():
                reading.exception()

    async def count_job_codes(self, job_id: str) -> int:
        return int(await self._one("SELECT count(*) FROM codes WHERE job_id = ?", job_id) or 0)

    async def create_job(self, job: Job) -> None:
        await self._write(
            "INSERT INTO jobs (id, doc) VALUES (?, ?)", job.job_id, dumps(job_to_doc(job))
        )

    async def get_job(self, job_id: str) -> Job | None:
        row = await self._one("SELECT doc FROM jobs WHERE id = ?", job_id)
        return job_from_doc(loads(row)) if row else None

    async def update_job(self, job: Job) -> None:
        await self._write(
            "UPDATE jobs SET doc = ? WHERE id = ?", dumps(job_to_doc(job)), job.job_id
        )

    async def hand_out_job(self, job_id: str, now: datetime) -> Job | None:
        def claim(conn: sqlite3.Connection) -> Job | None:
            with transaction(conn):
                row = conn.execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
                job = job_from_doc(loads(row[0])) if row else None
                if job is None or job.handed_out_at is not None:
                    return None
                handed = dataclasses.replace(job, handed_out_at=now, updated_at=now)
                conn.execute(
                    "UPDATE jobs SET doc = ? WHERE id = ?", (dumps(job_to_doc(handed)), job_id)
                )
                return handed

        return await self._run(claim, writes=True)

    async def keep_plain_codes(
        self, job_id: str, codes: Mapping[str, str], until: datetime
    ) -> None:
        rows = [(code_id, job_id, scan, to_ms(until)) for code_id, scan in codes.items()]

        def insert(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.executemany(
                    "INSERT OR IGNORE INTO plain_codes (id, job_id, scan_code, expires_at)"
                    " VALUES (?, ?, ?, ?)",
                    rows,
                )

        await self._run(insert, writes=True)

    async def plain_codes(self, code_ids: Sequence[str], now: datetime) -> dict[str, str]:
        ids = list(code_ids)
        marks = ", ".join("?" * len(ids))
        query = f"SELECT id, scan_code FROM plain_codes WHERE expires_at > ? AND id IN ({marks})"
        rows = await self._run(functools.partial(_fetch_all, query=query, args=(to_ms(now), *ids)))
        return dict(rows)

    async def drop_plain_codes(self, job_id: str, now: datetime) -> None:
        await self._write(
            "DELETE FROM plain_codes WHERE job_id = ? OR expires_at <= ?", job_id, to_ms(now)
        )

    async def purge_plain_codes(self, now: datetime) -> int:
        def purge(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                gone = conn.execute("DELETE FROM plain_codes WHERE expires_at <= ?", (to_ms(now),))
                return gone.rowcount

        return int(await self._run(purge, writes=True))


def _inserted(conn: sqlite3.Connection, row: Row) -> bool:
    try:
        conn.execute(INSERT_CODE, row)
    except sqlite3.IntegrityError:
        return False
    return True


def _decoded(rows: list[Row]) -> list[Code]:
    instant = remembering(from_ms)  # the codes of a page share a few instants
    keyed = ((row[0], row) for row in rows)
    with collection_paused():
        return list(readable(keyed, lambda row: code_of_row(row, instant), "code"))


def _fetch_all(conn: sqlite3.Connection, *, query: str, args: tuple[object, ...]) -> list[Any]:
    return conn.execute(query, args).fetchall()
