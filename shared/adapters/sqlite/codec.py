"""How documents are kept in SQLite rows: JSON text with tagged instants (`jsontext`),
the domain's conditions as SQL, and the row reads and writes that more than one
aggregate makes (codes, as `coderows` keeps them, instances, their outbox events,
redemptions)."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from enum import Enum
from typing import assert_never

from shared.adapters.documents import (
    camel,
    code_from_doc,
    code_to_doc,
    event_to_doc,
    redemption_from_doc,
    redemption_to_doc,
)
from shared.adapters.sqlite.coderows import CODE_SELECT, ROW_COLUMNS, code_of_row, code_row
from shared.adapters.sqlite.jsontext import dumps, loads
from shared.clock import to_ms
from shared.domain import model
from shared.domain.conditions import (
    Condition,
    CountBelow,
    Differs,
    Equals,
    LowerBound,
    OneOf,
    UpperBound,
)
from shared.domain.model import Change, Code, CodeRef, Redemption


def sql_of(
    conditions: Iterable[Condition],
    columns: frozenset[str],
    moved: frozenset[str] = frozenset(),
) -> tuple[str, list[object]]:
    """The SQL condition for the rows `conditions` hold for, and its parameters: an
    attribute in `columns` is read from its column, one in `moved` from its column or,
    in a row written before it had one, from `doc` (`coderows`), any other from `doc`."""
    read = functools.partial(_read, columns=columns, moved=moved)
    clauses: list[str] = []
    params: list[object] = []
    for condition in conditions:
        clause, args = _clause(condition, read)
        clauses.append(clause)
        params += args
    return " AND ".join(clauses) or "1", params


def _clause(condition: Condition, read: Callable[[str, object], str]) -> tuple[str, list[object]]:
    # `IS` and `IS NOT` compare as Python does: None (NULL) is a value like any other.
    match condition:
        case Equals(field, value):
            return f"{read(field, value)} IS ?", [_param(value)]
        case Differs(field, value):
            return f"{read(field, value)} IS NOT ?", [_param(value)]
        case OneOf(field, values):
            marks = ", ".join("?" * len(values))
            first = values[0] if values else None
            return f"{read(field, first)} IN ({marks})", [_param(v) for v in values]
        case LowerBound(field, at):
            bound = read(field, at)
            return f"({bound} IS NULL OR {bound} <= ?)", [to_ms(at)]
        case UpperBound(field, at):
            bound = read(field, at)
            return f"({bound} IS NULL OR ? < {bound})", [to_ms(at)]
        case CountBelow(count, limit):
            most = read(limit, 0)
            return f"({most} IS NULL OR {read(count, 0)} < {most})", []
        case _:
            assert_never(condition)


def _read(field: str, like: object, *, columns: frozenset[str], moved: frozenset[str]) -> str:
    """Where a row holds `field`, whose values are of the kind of `like`: its column,
    or its place in `doc` (an instant's milliseconds are under its tag, `jsontext`)."""
    if not field.isidentifier():  # names come from the domain; never a caller's text
        raise ValueError(f"not an attribute: {field!r}")
    if field in columns:
        return field
    tag = '."$date"' if isinstance(like, datetime) else ""
    in_doc = f"json_extract(doc, '$.{camel(field)}{tag}')"
    return f"coalesce({field}, {in_doc})" if field in moved else in_doc


def _param(value: object) -> object:
    if isinstance(value, datetime):
        return to_ms(value)
    return value.value if isinstance(value, Enum) else value


def select_code(conn: sqlite3.Connection, ref: CodeRef) -> Code | None:
    if ref.user_id is not None:
        query = "SELECT doc FROM instances WHERE code_type = ? AND user_id = ?"
        row = conn.execute(query, (ref.code_type, ref.user_id)).fetchone()
        return code_from_doc(loads(row[0])) if row else None
    query = f"SELECT {CODE_SELECT} FROM codes WHERE code_type = ? AND scan_norm = ?"
    found = conn.execute(query, (ref.code_type, ref.key)).fetchone()
    return code_of_row(found) if found else None


def with_events(
    conn: sqlite3.Connection, code: Code, changes: Sequence[Change], *, shared: bool
) -> Code:
    """Apply `changes`, inserting each one's event into the outbox."""
    for change in changes:
        code = model.applied(code, change)
        conn.execute(
            "INSERT INTO outbox (event_id, code_id, shared, doc) VALUES (?, ?, ?, ?)",
            (
                change.event.event_id,
                code.redemption_code_id,
                int(shared),
                dumps(event_to_doc(change.event, code)),
            ),
        )
    return code


def write_code(conn: sqlite3.Connection, ref: CodeRef, code: Code) -> None:
    if ref.is_shared:
        write_instance(conn, code, insert=False)
    else:
        update_code(conn, code)


def write_instance(conn: sqlite3.Connection, code: Code, *, insert: bool) -> None:
    values = (
        code.code_state.value,
        to_ms(code.redeemed_at),
        to_ms(code.timer_at),
        dumps(code_to_doc(code)),
        code.redemption_code_id,
    )
    if insert:
        conn.execute(
            "INSERT INTO instances (code_state, redeemed_at, timer_at, doc, id, code_type,"
            " user_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (*values, code.code_type, code.redeemed_by_user_id),
        )
    else:
        conn.execute(
            "UPDATE instances SET code_state = ?, redeemed_at = ?, timer_at = ?, doc = ?"
            " WHERE id = ?",
            values,
        )


INSERT_CODE = f"INSERT INTO codes ({CODE_SELECT}) VALUES ({', '.join('?' * len(ROW_COLUMNS))})"


def insert_code(conn: sqlite3.Connection, code: Code) -> None:
    conn.execute(INSERT_CODE, code_row(code))


def update_code(conn: sqlite3.Connection, code: Code) -> None:
    """Write `code` over its row (one of the earlier format too: it is written in this one).
    The columns a code never changes, and the indexes on them, are left alone."""
    (code_id, _, _, state, user, redeemed, _, timer, *unindexed) = code_row(code)
    conn.execute(
        "UPDATE codes SET code_state = ?, redeemed_by_user_id = ?, redeemed_at = ?,"
        " timer_at = ?, scan_code = ?, created_at = ?, updated_at = ?, activated_at = ?,"
        " version = ?, custom_code_info = ?, doc = ? WHERE id = ?",
        (state, user, redeemed, timer, *unindexed, code_id),
    )


def select_redemption(conn: sqlite3.Connection, redemption_id: str) -> Redemption | None:
    row = conn.execute("SELECT doc FROM redemptions WHERE id = ?", (redemption_id,)).fetchone()
    return redemption_from_doc(loads(row[0])) if row else None


def write_redemption(conn: sqlite3.Connection, r: Redemption, *, insert: bool) -> None:
    pending = int(r.status.is_terminal and bool(r.replies))
    doc = dumps(redemption_to_doc(r))
    if insert:
        conn.execute(
            "INSERT INTO redemptions (id, code_type, accepted_at, status, reply_pending, doc)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (r.redemption_id, r.code_type, to_ms(r.accepted_at), r.status.value, pending, doc),
        )
    else:
        conn.execute(
            "UPDATE redemptions SET code_type = ?, status = ?, reply_pending = ?, doc = ?"
            " WHERE id = ?",
            (r.code_type, r.status.value, pending, doc, r.redemption_id),
        )
