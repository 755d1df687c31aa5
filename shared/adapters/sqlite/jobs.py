"""Bulk: generation jobs, import and export of codes."""

from __future__ import annotations

import dataclasses
import functools
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.adapters.documents import code_from_doc, job_from_doc, job_to_doc
from shared.adapters.sqlite.base import SqliteBase
from shared.adapters.sqlite.codec import dumps, insert_code, loads
from shared.adapters.sqlite.schema import transaction
from shared.adapters.unreadable import readable
from shared.clock import to_ms
from shared.domain.model import Code, Job


class Jobs(SqliteBase):
    """Generation jobs, and codes added, read and counted in batches."""

    async def add_codes(self, codes: Sequence[Code]) -> list[bool]:
        def insert(conn: sqlite3.Connection) -> list[bool]:
            added = []
            with transaction(conn):
                for code in codes:
                    try:
                        insert_code(conn, code)
                        added.append(True)
                    except sqlite3.IntegrityError:
                        added.append(False)
            return added

        return await self._run(insert)

    async def codes_of(
        self, code_type: str, *, job_id: str | None = None, batch: int = 1000
    ) -> AsyncIterator[list[Code]]:
        column, value = ("job_id", job_id) if job_id else ("code_type", code_type)
        query = f"SELECT id, doc FROM codes WHERE {column} = ? AND id > ? ORDER BY id LIMIT ?"
        after = ""
        while True:
            rows: list[tuple[str, str]] = await self._run(
                functools.partial(_fetch_all, query=query, args=(value, after, batch))
            )
            if not rows:
                return
            yield list(readable(rows, lambda doc: code_from_doc(loads(doc)), "code"))
            after = rows[-1][0]

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

        return await self._run(claim)

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

        await self._run(insert)

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

        return int(await self._run(purge))


def _fetch_all(conn: sqlite3.Connection, *, query: str, args: tuple[object, ...]) -> list[Any]:
    return conn.execute(query, args).fetchall()
