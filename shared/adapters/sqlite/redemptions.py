"""Redemptions: opened on acceptance, ended once, with the replies they owe."""

from __future__ import annotations

import dataclasses
import sqlite3

from shared.adapters.documents import redemption_from_doc
from shared.adapters.sqlite.base import SqliteBase
from shared.adapters.sqlite.codec import select_redemption, write_redemption
from shared.adapters.sqlite.jsontext import loads
from shared.adapters.sqlite.schema import transaction
from shared.clock import to_ms
from shared.domain import model
from shared.domain.model import Place, Redemption, ReplyTo


class Redemptions(SqliteBase):
    """Redemptions, keyed by their id."""

    async def open_redemption(self, redemption: Redemption) -> Redemption | None:
        def insert(conn: sqlite3.Connection) -> Redemption | None:
            with transaction(conn):
                existing = select_redemption(conn, redemption.redemption_id)
                if existing is None:
                    write_redemption(conn, redemption, insert=True)
                return existing

        return await self._run(insert, writes=True)

    async def add_reply(self, redemption_id: str, reply: ReplyTo) -> None:
        await self._update_redemption(
            redemption_id,
            lambda r: dataclasses.replace(r, replies=(*r.replies, reply)),
        )

    async def key_redemption(self, redemption_id: str, key: str) -> None:
        await self._update_redemption(redemption_id, lambda r: dataclasses.replace(r, code_key=key))

    async def finish_redemption(self, redemption: Redemption) -> Redemption:
        def finish(stored: Redemption) -> Redemption:
            if not model.records(stored, redemption):
                return stored
            return model.with_outcome(stored, redemption)

        finished = await self._update_redemption(redemption.redemption_id, finish)
        if finished is None:
            raise LookupError(f"redemption {redemption.redemption_id} was never opened")
        return finished

    async def get_redemption(self, redemption_id: str) -> Redemption | None:
        row = await self._one("SELECT doc FROM redemptions WHERE id = ?", redemption_id)
        return redemption_from_doc(loads(row)) if row else None

    async def recent_redemptions(
        self, code_type: str | None, *, limit: int, after: Place | None
    ) -> list[Redemption]:
        where: list[str] = ["1 = 1"]
        args: list[object] = []
        if code_type is not None:
            where.append("code_type = ?")
            args.append(code_type)
        if after is not None and after.redemption_id is None:
            where.append("accepted_at < ?")
            args.append(to_ms(after.accepted_at))
        elif after is not None:
            where.append("(accepted_at, id) < (?, ?)")
            args.extend((to_ms(after.accepted_at), after.redemption_id))
        rows = await self._all(
            f"SELECT doc FROM redemptions WHERE {' AND '.join(where)}"
            " ORDER BY accepted_at DESC, id DESC LIMIT ?",
            *args,
            limit,
        )
        return [redemption_from_doc(loads(r)) for r in rows]
