"""The outbox: events waiting for the relay, and replies waiting to be sent."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Sequence

from shared.adapters.documents import pending_event_from_doc, redemption_from_doc
from shared.adapters.sqlite.base import SqliteBase
from shared.adapters.sqlite.jsontext import loads
from shared.adapters.sqlite.schema import transaction
from shared.adapters.unreadable import set_aside
from shared.domain.model import Redemption, ReplyTo
from shared.ports import Backlog, PendingEvents


class Outbox(SqliteBase):
    """Events in the `outbox` table, by code, and redemptions with replies pending."""

    async def pending_events(self, *, limit: int) -> list[PendingEvents]:
        def read(conn: sqlite3.Connection) -> list[PendingEvents]:
            codes = conn.execute(
                "SELECT code_id, shared FROM outbox WHERE set_aside = 0"
                " GROUP BY code_id ORDER BY min(seq) LIMIT ?",
                (limit,),
            ).fetchall()
            found: list[PendingEvents] = []
            for code_id, shared in codes:
                rows = conn.execute(
                    "SELECT doc FROM outbox WHERE code_id = ? ORDER BY seq", (code_id,)
                )
                try:
                    events = tuple(pending_event_from_doc(loads(r[0])) for r in rows)
                except Exception as error:
                    set_aside("outbox", code_id, error)
                    with transaction(conn):
                        conn.execute(
                            "UPDATE outbox SET set_aside = 1 WHERE code_id = ?", (code_id,)
                        )
                    continue
                found.append(PendingEvents(code_id, events, "instances" if shared else "codes"))
            return found

        return await self._run(read)

    async def mark_relayed(self, relayed: Sequence[PendingEvents]) -> None:
        ids = [(p.event.event_id,) for item in relayed for p in item.events]

        def delete(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.executemany("DELETE FROM outbox WHERE event_id = ?", ids)

        if ids:
            await self._run(delete, writes=True)

    async def backlog(self) -> Backlog:
        def read(conn: sqlite3.Connection) -> Backlog:
            waiting = "FROM outbox WHERE set_aside = 0"
            (events,) = conn.execute(f"SELECT count(*) {waiting}").fetchone()
            first = conn.execute(f"SELECT doc {waiting} ORDER BY seq LIMIT 1").fetchone()
            try:
                oldest = (
                    pending_event_from_doc(loads(first[0])).event.occurred_at if first else None
                )
            except Exception:  # unreadable, and not set aside yet: the relay does that
                oldest = None
            return Backlog(events, oldest)

        return await self._run(read)

    async def pending_replies(self, *, limit: int) -> list[Redemption]:
        rows = await self._all("SELECT doc FROM redemptions WHERE reply_pending = 1 LIMIT ?", limit)
        return [redemption_from_doc(loads(r)) for r in rows]

    async def mark_replied(self, replied: Sequence[Redemption]) -> None:
        for sent in replied:
            await self._update_redemption(sent.redemption_id, _without_replies(sent.replies))


def _without_replies(sent: Sequence[ReplyTo]) -> Callable[[Redemption], Redemption]:
    def drop(stored: Redemption) -> Redemption:
        return dataclasses.replace(
            stored, replies=tuple(r for r in stored.replies if r not in sent)
        )

    return drop
