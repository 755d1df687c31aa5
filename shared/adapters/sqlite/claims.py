"""Shared-code claims: a user's claim, a campaign's slots, and the instance a
claim makes."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence
from datetime import datetime

from shared.adapters.documents import campaign_from_doc, campaign_to_doc
from shared.adapters.sqlite.base import SqliteBase
from shared.adapters.sqlite.codec import select_code, sql_of, with_events, write_instance
from shared.adapters.sqlite.jsontext import dumps, loads
from shared.adapters.sqlite.schema import CAMPAIGN_COLUMNS, transaction
from shared.domain import model
from shared.domain.model import Campaign, Change, Code, CodeRef


class Claims(SqliteBase):
    """A shared code's user claims and slots, each keyed by the redemption."""

    async def reserve_user(self, code_type: str, user_id: str, redemption_id: str) -> str:
        def reserve(conn: sqlite3.Connection) -> str:
            with transaction(conn):
                conn.execute(
                    "INSERT OR IGNORE INTO shared_claims (code_type, user_id, redemption_id)"
                    " VALUES (?, ?, ?)",
                    (code_type, user_id, redemption_id),
                )
                row = conn.execute(
                    "SELECT redemption_id FROM shared_claims WHERE code_type = ? AND user_id = ?",
                    (code_type, user_id),
                ).fetchone()
                return str(row[0])

        return await self._run(reserve, writes=True)

    async def release_user(self, code_type: str, user_id: str, redemption_id: str) -> None:
        await self._write(
            "DELETE FROM shared_claims WHERE code_type = ? AND user_id = ? AND redemption_id = ?",
            code_type,
            user_id,
            redemption_id,
        )

    async def user_holder(self, code_type: str, user_id: str) -> str | None:
        held = await self._one(
            "SELECT redemption_id FROM shared_claims WHERE code_type = ? AND user_id = ?",
            code_type,
            user_id,
        )
        return None if held is None else str(held)

    async def take_slot(self, code_type: str, redemption_id: str, now: datetime) -> bool:
        open_now, params = sql_of(model.slot_open(now), CAMPAIGN_COLUMNS)

        def take(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                if _holds_slot(conn, code_type, redemption_id):
                    return True
                row = conn.execute(
                    f"SELECT doc FROM campaigns WHERE code_type = ? AND {open_now}",
                    (code_type, *params),
                ).fetchone()
                if row is None:
                    return False
                conn.execute(
                    "INSERT INTO slots (code_type, redemption_id) VALUES (?, ?)",
                    (code_type, redemption_id),
                )
                _count_slot(conn, campaign_from_doc(loads(row[0])), +1)
                return True

        return await self._run(take, writes=True)

    async def release_slot(self, code_type: str, redemption_id: str, *, refund: bool) -> None:
        def release(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                if not _holds_slot(conn, code_type, redemption_id):
                    return
                conn.execute(
                    "DELETE FROM slots WHERE code_type = ? AND redemption_id = ?",
                    (code_type, redemption_id),
                )
                row = conn.execute(
                    "SELECT doc FROM campaigns WHERE code_type = ?", (code_type,)
                ).fetchone()
                if refund and row:
                    _count_slot(conn, campaign_from_doc(loads(row[0])), -1)

        await self._run(release, writes=True)

    async def add_instance(self, instance: Code, changes: Sequence[Change]) -> tuple[Code, bool]:
        def add(conn: sqlite3.Connection) -> tuple[Code, bool]:
            owner = CodeRef(instance.code_type, "", changes[0].event.user_id)
            with transaction(conn):
                existing = select_code(conn, owner)
                if existing is not None:
                    return existing, False
                code = with_events(conn, instance, changes, shared=True)
                write_instance(conn, code, insert=True)
                return code, True

        return await self._run(add, writes=True)


def _holds_slot(conn: sqlite3.Connection, code_type: str, redemption_id: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM slots WHERE code_type = ? AND redemption_id = ?",
        (code_type, redemption_id),
    ).fetchone()
    return row is not None


def _count_slot(conn: sqlite3.Connection, campaign: Campaign, delta: int) -> None:
    counted = dataclasses.replace(campaign, redemption_count=campaign.redemption_count + delta)
    conn.execute(
        "UPDATE campaigns SET doc = ? WHERE code_type = ?",
        (dumps(campaign_to_doc(counted)), campaign.code_type),
    )
