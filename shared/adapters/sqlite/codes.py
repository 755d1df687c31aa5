"""Codes: personal codes by scan code, their transitions with events, the
operator's inventory, deletion and reset, and what a user redeemed."""

from __future__ import annotations

import dataclasses
import functools
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.adapters.sqlite.base import SqliteBase
from shared.adapters.sqlite.codec import (
    insert_code,
    select_code,
    sql_of,
    update_code,
    with_events,
    write_code,
)
from shared.adapters.sqlite.coderows import CODE_SELECT, DOC_ONLY, MOVED_COLUMNS, code_of_row
from shared.adapters.sqlite.schema import CODE_COLUMNS, transaction
from shared.clock import utcnow
from shared.domain import model
from shared.domain.model import Change, Code, CodeRef
from shared.domain.states import CodeState

RESET_BATCH = 1_000


class Codes(SqliteBase):
    """Personal codes, and the reads that span them and shared codes' instances."""

    async def add_code(self, code: Code) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            try:
                insert_code(conn, code)
            except sqlite3.IntegrityError:
                raise model.scan_code_taken(code.code_type, code.scan_code) from None

        await self._run(insert, writes=True)

    async def get_code(self, ref: CodeRef) -> Code | None:
        return await self._run(lambda conn: select_code(conn, ref))

    async def find_codes(self, key: str, *, limit: int) -> list[Code]:
        query = f"SELECT {CODE_SELECT} FROM codes WHERE scan_norm = ? LIMIT ?"
        rows = await self._run(lambda conn: conn.execute(query, (key, limit)).fetchall())
        return [code_of_row(row) for row in rows]

    async def apply(
        self,
        ref: CodeRef,
        changes: Sequence[Change],
        *,
        redemption_id: str | None = None,
        version: int | None = None,
        attempt: int | None = None,
    ) -> Code | None:
        def transition(conn: sqlite3.Connection) -> Code | None:
            with transaction(conn):
                code = select_code(conn, ref)
                if code is None or not model.expected(
                    code, changes, redemption_id, version, attempt
                ):
                    return None
                code = with_events(conn, code, changes, shared=ref.is_shared)
                write_code(conn, ref, code)
                return code

        return await self._run(transition, writes=True)

    async def set_custom_code_info(
        self, code_type: str, key: str, version: int, info: Mapping[str, Any], by: str
    ) -> Code | None:
        def update(conn: sqlite3.Connection) -> Code | None:
            with transaction(conn):
                code = select_code(conn, CodeRef(code_type, key))
                if code is None or code.version != version:
                    return None
                code = dataclasses.replace(
                    code, custom_code_info=dict(info), version=version + 1, updated_at=utcnow()
                )
                update_code(conn, code)
                return code

        return await self._run(update, writes=True)

    async def redeemed_codes(self, user_id: str, code_type: str | None) -> list[Code]:
        narrow = " AND code_type = ?" if code_type is not None else ""
        args = (user_id,) if code_type is None else (user_id, code_type)
        # An instance's row, in the columns of a code's, reads from its document.
        rows = await self._run(
            lambda conn: conn.execute(
                f"SELECT {CODE_SELECT} FROM codes WHERE redeemed_by_user_id = ?"
                " AND code_state = 'Redeemed'" + narrow + f" UNION ALL SELECT {DOC_ONLY}"
                " FROM instances WHERE user_id = ? AND code_state = 'Redeemed'" + narrow,
                (*args, *args),
            ).fetchall()
        )
        codes = [code_of_row(row) for row in rows]
        return sorted(codes, key=lambda code: code.redeemed_at or code.updated_at)

    async def inventory(self, code_type: str, *, shared: bool) -> dict[CodeState, int]:
        table = "instances" if shared else "codes"
        rows = await self._run(
            lambda conn: conn.execute(
                f"SELECT code_state, count(*) FROM {table} WHERE code_type = ? GROUP BY code_state",
                (code_type,),
            ).fetchall()
        )
        counts = dict.fromkeys(CodeState, 0)
        counts.update({CodeState(state): n for state, n in rows})
        return counts

    async def delete_codes(self, code_type: str) -> int:
        deletable, params = sql_of(model.deletable(), CODE_COLUMNS, MOVED_COLUMNS)

        def delete(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                return conn.execute(
                    f"DELETE FROM codes WHERE code_type = ? AND {deletable}", (code_type, *params)
                ).rowcount

        return await self._run(delete, writes=True)

    async def reset_codes(
        self, code_type: str, to: CodeState, reset_id: str, by: str, now: datetime
    ) -> int:
        resettable, params = sql_of(model.resettable(), CODE_COLUMNS, MOVED_COLUMNS)

        def reset_batch(conn: sqlite3.Connection, *, after: str) -> tuple[int, str | None]:
            with transaction(conn):
                rows = conn.execute(
                    f"SELECT {CODE_SELECT} FROM codes WHERE code_type = ? AND {resettable}"
                    " AND id > ? ORDER BY id LIMIT ?",
                    (code_type, *params, after, RESET_BATCH),
                ).fetchall()
                for row in rows:
                    code = code_of_row(row)
                    change = model.reset(
                        code, to, now=now, by=by, event_id=f"{reset_id}:{code.redemption_code_id}"
                    )
                    update_code(conn, with_events(conn, code, [change], shared=False))
            return len(rows), rows[-1][0] if rows else None

        total, after = 0, ""
        while True:
            count, last = await self._run(functools.partial(reset_batch, after=after), writes=True)
            total += count
            if last is None or count < RESET_BATCH:
                return total
            after = last
