"""How a personal code is kept in a row of `codes`: what every code has in columns,
the rest in `doc` (only what differs from a new code's defaults, so a new code's is
`{}`), and rows of the earlier format, which kept the whole document in `doc`.

A bulk load writes and an export reads a million rows: columns cost no JSON either
way. A row of the earlier format has no `created_at`; it is read from its document,
and written in this format the next time its code changes.
"""

from __future__ import annotations

import dataclasses
import json
import operator
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from shared.adapters.documents import (
    Doc,
    camel,
    code_from_doc,
    escaped,
    history_from_doc,
    history_to_doc,
    loaded,
    stored,
)
from shared.adapters.sqlite.jsontext import dumps, loads
from shared.clock import from_ms, to_ms
from shared.domain.generation import alike
from shared.domain.model import AttemptState, Code
from shared.domain.states import CodeState

# The columns a code is read from, in the order `code_of_row` takes them.
CODE_SELECT = (
    "id, code_type, scan_norm, code_state, redeemed_by_user_id, redeemed_at, job_id, timer_at,"
    " scan_code, created_at, updated_at, activated_at, version, custom_code_info, doc"
)
ROW_COLUMNS = tuple(column.strip() for column in CODE_SELECT.split(","))
# A row holding its whole document (an instance's) in the columns of `CODE_SELECT`.
DOC_ONLY = "id" + ", NULL" * (len(ROW_COLUMNS) - 2) + ", doc"
# Attributes kept in a column of their name in this format, in `doc` in the earlier one.
MOVED_COLUMNS = frozenset(
    {"scan_code", "created_at", "updated_at", "activated_at", "version", "custom_code_info"}
)
_IN_COLUMNS = MOVED_COLUMNS | {
    "redemption_code_id",
    "code_type",
    "key",
    "code_state",
    "redeemed_by_user_id",
    "redeemed_at",
    "job_id",
    "timer_at",
}
# The attributes `doc` holds, with their document keys and a new code's values.
_REST = [
    (f.name, camel(f.name), f.default)
    for f in dataclasses.fields(Code)
    if f.name not in _IN_COLUMNS and f.name != "history"
]
_NAMES = {key: name for name, key, _ in _REST}
_REST_OF = operator.attrgetter(*(name for name, _, _ in _REST), "history")
_NEW = (*(default for _, _, default in _REST), ())  # what a new code has there
_STATES = {state.value: state for state in CodeState}
_BLANK = Code("", "", "", CodeState.INACTIVE, datetime.min, datetime.min, key="-")
NO_REST = "{}"

Row = tuple[Any, ...]


def code_row(code: Code, ms: Callable[[datetime | None], int | None] = to_ms) -> Row:
    """The row of `code`, in the columns of `CODE_SELECT`; `ms` turns instants into
    milliseconds (a bulk load passes one that remembers the few its codes share)."""
    return (
        code.redemption_code_id,
        code.code_type,
        code.key,
        code.code_state.value,
        code.redeemed_by_user_id,
        ms(code.redeemed_at),
        code.job_id,
        ms(code.timer_at),
        code.scan_code,
        ms(code.created_at),
        ms(code.updated_at),
        ms(code.activated_at),
        code.version,
        _map_text(code.custom_code_info),
        _rest_text(code),
    )


def code_of_row(row: Row, instant: Callable[[int], datetime] = from_ms) -> Code:
    """The code a row of `CODE_SELECT` holds, in this format or the earlier one."""
    (code_id, code_type, key, state, user, redeemed, job, timer) = row[:8]
    (scan, created, updated, activated, version, info, doc) = row[8:]
    if created is None:
        return code_from_doc(loads(doc))
    fields: dict[str, Any] = {}
    if doc != NO_REST:
        fields.update(_rest_of(loads(doc)))
    return alike(
        _BLANK,
        redemption_code_id=code_id,
        code_type=code_type,
        key=key,
        code_state=_STATES[state],
        redeemed_by_user_id=user,
        redeemed_at=None if redeemed is None else instant(redeemed),
        job_id=job,
        timer_at=None if timer is None else instant(timer),
        scan_code=scan,
        created_at=instant(created),
        updated_at=instant(updated),
        activated_at=None if activated is None else instant(activated),
        version=version,
        custom_code_info=None if info is None else loaded("custom_code_info", json.loads(info)),
        **fields,
    )


def _map_text(info: Mapping[str, Any] | None) -> str | None:
    if info is None:
        return None
    return json.dumps(escaped(info), separators=(",", ":"))


def _rest_text(code: Code) -> str:
    if _REST_OF(code) == _NEW:
        return NO_REST
    doc: Doc = {
        key: stored(name, value)
        for name, key, default in _REST
        if (value := getattr(code, name)) != default
    }
    if code.history:
        doc["history"] = [history_to_doc(entry) for entry in code.history]
    if "attemptState" in doc:
        doc["attemptState"] = code.attempt_state.value if code.attempt_state else None
    return dumps(doc) if doc else NO_REST


def _rest_of(doc: Doc) -> dict[str, Any]:
    names = ((_NAMES[key], value) for key, value in doc.items() if key in _NAMES)
    fields = {name: loaded(name, value) for name, value in names}
    if fields.get("attempt_state") is not None:
        fields["attempt_state"] = AttemptState(fields["attempt_state"])
    if "history" in doc:
        fields["history"] = tuple(history_from_doc(entry) for entry in doc["history"])
    return fields


def remembering(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`convert`, remembering what it gave for the values it was given (a batch's codes
    share a few instants)."""
    known: dict[Any, Any] = {}

    def converted(value: Any) -> Any:
        found = known.get(value, known)
        if found is known:
            found = known[value] = convert(value)
        return found

    return converted
