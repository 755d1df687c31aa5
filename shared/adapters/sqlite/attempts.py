"""Fulfillment attempts: their outcomes, and the timers (deadline, next poll,
retry) that the workers take when due."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from shared.adapters.sqlite.base import SqliteBase
from shared.adapters.sqlite.codec import select_code, write_code
from shared.adapters.sqlite.coderows import CODE_SELECT, DOC_ONLY, Row, code_of_row
from shared.adapters.sqlite.schema import transaction
from shared.adapters.unreadable import set_aside
from shared.clock import to_ms
from shared.domain import attempts, model
from shared.domain.model import AttemptState, Code, CodeRef
from shared.domain.states import CodeState
from shared.ports import Due, Timers


class Attempts(SqliteBase):
    """Attempts on codes and on shared codes' instances, and their timers."""

    async def update_attempt(
        self,
        ref: CodeRef,
        *,
        redemption_id: str,
        attempt: int,
        state: CodeState,
        fields: Mapping[str, Any],
        attempt_state: AttemptState | None = None,
    ) -> Code | None:
        def update(conn: sqlite3.Connection) -> Code | None:
            with transaction(conn):
                code = select_code(conn, ref)
                if code is None or not model.on_attempt(
                    code, redemption_id, attempt, state, attempt_state
                ):
                    return None
                code = dataclasses.replace(code, **fields)
                write_code(conn, ref, code)
                return code

        return await self._run(update, writes=True)

    async def timers(self, now: datetime) -> Timers:
        def count(conn: sqlite3.Connection) -> Timers:
            pending = due = 0
            for table in ("codes", "instances"):
                set_, due_ = conn.execute(
                    f"SELECT count(*), count(*) FILTER (WHERE timer_at <= ?) FROM {table}"
                    " WHERE timer_at IS NOT NULL",
                    (to_ms(now),),
                ).fetchone()
                pending, due = pending + set_, due + due_
            return Timers(pending, due)

        return await self._run(count)

    async def take_due(self, now: datetime, lease_s: float, *, limit: int) -> list[Due]:
        def take(conn: sqlite3.Connection) -> list[Due]:
            due: list[tuple[int, str, str, Row]] = []
            with transaction(conn):
                for table, columns in (("codes", CODE_SELECT), ("instances", DOC_ONLY)):
                    due += [
                        (row[-1], table, row[0], row[:-1])
                        for row in conn.execute(
                            f"SELECT {columns}, timer_at FROM {table} WHERE timer_at <= ?"
                            " ORDER BY timer_at LIMIT ?",
                            (to_ms(now), limit),
                        )
                    ]
                taken: list[Due] = []
                for _, table, key, row in sorted(due):  # earliest first, of either table
                    if len(taken) == limit:
                        break
                    try:
                        code = code_of_row(row)
                    except Exception as error:
                        set_aside(f"{table} timer", key, error)  # looked at again after a lease
                        conn.execute(
                            f"UPDATE {table} SET timer_at = ? WHERE id = ?",
                            (to_ms(now + timedelta(seconds=lease_s)), key),
                        )
                        continue
                    user = code.redeemed_by_user_id if table == "instances" else None
                    ref = CodeRef(code.code_type, code.key, user)
                    leased = attempts.lease(code, now, lease_s)
                    write_code(conn, ref, dataclasses.replace(code, timer_at=leased))
                    taken.append(Due(ref, code))
            return taken

        return await self._run(take, writes=True)
