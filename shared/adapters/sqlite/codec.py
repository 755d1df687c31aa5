"""How documents are kept in SQLite rows: JSON text with tagged instants, the
domain's conditions as SQL, and the row reads and writes that more than one
aggregate makes (codes, instances, their outbox events, redemptions)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from enum import Enum
from typing import Any, assert_never

from shared.adapters.documents import (
    Doc,
    camel,
    code_from_doc,
    code_to_doc,
    event_to_doc,
    redemption_from_doc,
    redemption_to_doc,
)
from shared.clock import from_ms, to_ms
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


def _encode(value: object) -> object:
    if isinstance(value, datetime):
        return {"$date": to_ms(value)}
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot store {type(value).__name__}")


def _decode(obj: dict[str, Any]) -> object:
    """An instant from its tag `{"$date": ms}`; any other object as it is.

    No key of a caller's map is stored with a `$` (`documents.escaped`), so a
    tag is always an instant. Files of the previous format may hold a caller's
    own `{"$date": x}`: it stays a map unless x is a whole number of
    milliseconds in range (and `documents.unescaped` gives those back as maps).
    """
    ms = obj.get("$date") if len(obj) == 1 else None
    if type(ms) is not int:
        return obj
    try:
        return from_ms(ms)
    except (OverflowError, ValueError, OSError):
        return obj


def dumps(doc: Doc) -> str:
    return json.dumps(doc, default=_encode, separators=(",", ":"))


def loads(text: str) -> Doc:
    doc: Doc = json.loads(text, object_hook=_decode)
    return doc


def sql_of(conditions: Iterable[Condition], columns: frozenset[str]) -> tuple[str, list[object]]:
    """The SQL condition for the rows `conditions` hold for, and its parameters: an
    attribute in `columns` is read from its column, any other from the row's `doc`."""
    clauses: list[str] = []
    params: list[object] = []
    for condition in conditions:
        clause, args = _clause(condition, columns)
        clauses.append(clause)
        params += args
    return " AND ".join(clauses) or "1", params


def _clause(condition: Condition, columns: frozenset[str]) -> tuple[str, list[object]]:
    # `IS` and `IS NOT` compare as Python does: None (NULL) is a value like any other.
    match condition:
        case Equals(field, value):
            return f"{_read(field, value, columns)} IS ?", [_param(value)]
        case Differs(field, value):
            return f"{_read(field, value, columns)} IS NOT ?", [_param(value)]
        case OneOf(field, values):
            marks = ", ".join("?" * len(values))
            first = values[0] if values else None
            return f"{_read(field, first, columns)} IN ({marks})", [_param(v) for v in values]
        case LowerBound(field, at):
            bound = _read(field, at, columns)
            return f"({bound} IS NULL OR {bound} <= ?)", [to_ms(at)]
        case UpperBound(field, at):
            bound = _read(field, at, columns)
            return f"({bound} IS NULL OR ? < {bound})", [to_ms(at)]
        case CountBelow(count, limit):
            most = _read(limit, 0, columns)
            return f"({most} IS NULL OR {_read(count, 0, columns)} < {most})", []
        case _:
            assert_never(condition)


def _read(field: str, like: object, columns: frozenset[str]) -> str:
    """Where a row holds `field`, whose values are of the kind of `like`: its column,
    or its place in `doc` (an instant's milliseconds are under its tag, `_encode`)."""
    if not field.isidentifier():  # names come from the domain; never a caller's text
        raise ValueError(f"not an attribute: {field!r}")
    if field in columns:
        return field
    tag = '."$date"' if isinstance(like, datetime) else ""
    return f"json_extract(doc, '$.{camel(field)}{tag}')"


def _param(value: object) -> object:
    if isinstance(value, datetime):
        return to_ms(value)
    return value.value if isinstance(value, Enum) else value


def select_code(conn: sqlite3.Connection, ref: CodeRef) -> Code | None:
    if ref.user_id is not None:
        query = "SELECT doc FROM instances WHERE code_type = ? AND user_id = ?"
        row = conn.execute(query, (ref.code_type, ref.user_id)).fetchone()
    else:
        query = "SELECT doc FROM codes WHERE code_type = ? AND scan_norm = ?"
        row = conn.execute(query, (ref.code_type, ref.key)).fetchone()
    return code_from_doc(loads(row[0])) if row else None


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


def insert_code(conn: sqlite3.Connection, code: Code) -> None:
    conn.execute(
        "INSERT INTO codes (id, code_type, scan_norm, code_state, redeemed_by_user_id,"
        " redeemed_at, job_id, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            code.redemption_code_id,
            code.code_type,
            code.key,
            code.code_state.value,
            code.redeemed_by_user_id,
            to_ms(code.redeemed_at),
            code.job_id,
            dumps(code_to_doc(code)),
        ),
    )


def update_code(conn: sqlite3.Connection, code: Code) -> None:
    conn.execute(
        "UPDATE codes SET code_state = ?, redeemed_by_user_id = ?, redeemed_at = ?,"
        " timer_at = ?, doc = ? WHERE id = ?",
        (
            code.code_state.value,
            code.redeemed_by_user_id,
            to_ms(code.redeemed_at),
            to_ms(code.timer_at),
            dumps(code_to_doc(code)),
            code.redemption_code_id,
        ),
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
