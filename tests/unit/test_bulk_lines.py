"""Bulk import and export at speed say what the wire models say: an exported line is the
code's `CodeRecord`, an imported line is checked as `ImportRow` checks it, and a CSV line
is read as the csv module reads it."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake import bulk
from services.intake.bulk import Fields, Importer, ImportRow
from services.intake.export import CSV_COLUMNS, csv_lines, export_lines, quoted
from shared.domain.codekeys import CodeKeys
from shared.domain.model import AttemptState, Code, HistoryEntry
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import Action, CodeState
from shared.messages import CodeRecord
from tests.fakes import FakeStore

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BARE = Code("c1", "gems", "=A1", CodeState.INACTIVE, NOW, NOW)
FULL = Code(
    "c2", "gems", "B2", CodeState.REDEEMED, NOW, NOW + timedelta(seconds=1), version=4,
    custom_code_info={"tier": "gold", "n": [1, 2.5, None], "é": "ü"},
    custom_redemption_info={"x": {"y": True}}, redeemed_by_user_id="+u1", redemption_id="r1",
    invalidation_reason="why", activated_at=NOW, redeemed_at=NOW, invalidated_at=NOW,
    attempt=2, attempted_at=NOW, error_code="E", error_msg="-oops",
    attempt_state=AttemptState.SUCCEEDED, response={"ok": 1}, deadline_at=NOW,
    next_poll_at=NOW, retry_at=NOW, timer_at=NOW, job_id="j",
    history=(HistoryEntry(NOW, Action.REDEEM, CodeState.AVAILABLE, CodeState.REDEEMED, "u1"),),
)  # fmt: skip


async def exported(codes: list[Code], fmt: str) -> bytes:
    async def batches() -> AsyncIterator[list[Code]]:
        yield codes

    return b"".join([chunk async for chunk in export_lines(batches(), fmt)])


def record_cells(code: Code) -> list[object]:
    """A CSV row as the export wrote it from `CodeRecord` before it wrote from codes."""
    row = CodeRecord.of(code).model_dump(mode="json")
    if row["customCodeInfo"] is not None:
        row["customCodeInfo"] = json.dumps(row["customCodeInfo"], separators=(",", ":"))
    return ["" if row[c] is None else quoted(row[c]) for c in CSV_COLUMNS]


async def test_an_exported_line_is_the_codes_record() -> None:
    codes = [BARE, FULL]
    as_csv = await exported(codes, "csv")
    assert as_csv == csv_lines([list(CSV_COLUMNS), *map(record_cells, codes)])
    as_ndjson = await exported(codes, "ndjson")
    assert as_ndjson == b"".join(
        CodeRecord.of(code).model_dump_json().encode() + b"\n" for code in codes
    )


def checked_by_model(values: dict[str, Any]) -> Fields | str:
    try:
        row = ImportRow.model_validate(values)
    except Exception as error:
        return type(error).__name__
    return Fields(row.scanCode, row.codeState, row.customCodeInfo)


def checked_at_speed(values: dict[str, Any]) -> Fields | str:
    try:
        return bulk._fields(values)
    except DomainError as error:
        assert error.reason is ReasonCode.INVALID_PARAMETER_VALUE
        return "ValidationError"


VALUES = st.one_of(
    st.text(max_size=8),
    st.sampled_from([*(s.value for s in CodeState), "inactive", ""]),
    st.integers(),
    st.none(),
    st.booleans(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.lists(st.integers(), max_size=2),
)


@given(
    st.dictionaries(st.sampled_from(["scanCode", "codeState", "customCodeInfo", "other"]), VALUES)
)
def test_a_line_is_checked_as_the_import_row_model_checks_it(values: dict[str, Any]) -> None:
    assert checked_at_speed(values) == checked_by_model(values)


@given(st.text(st.characters(exclude_characters='"\r\n\0'), min_size=1))
def test_a_csv_line_without_quotes_is_read_as_the_csv_module_reads_it(line: str) -> None:
    assert bulk._cells(line) == next(csv.reader([line]))


def lines(*rows: str) -> list[bytes]:
    return [("\n".join(rows) + "\n").encode()]


async def chunks_of(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_an_import_in_many_batches_reports_each_line_and_is_idempotent() -> None:
    store = FakeStore()
    body = lines(
        "scanCode,codeState,customCodeInfo",
        "A1,Available,",
        "bad code!,,",
        "A2,,",
        "a-1,,",  # A1 again, in another spelling
        "A3,Redeemed,",
        'A4,,"{""n"": 4}"',
        "A5,Bogus,",
        "A6,Inactive,",
    )
    importer = Importer(store, lambda: NOW, batch=2)
    report = await importer.run("gems", "csv", chunks_of(body))
    assert (report.rows, report.added, report.unchanged, report.rejected) == (8, 4, 1, 3)
    assert [error.line for error in report.errors] == [3, 6, 8]
    again = await importer.run("gems", "csv", chunks_of(body))
    assert (again.added, again.unchanged, again.rejected) == (0, 5, 3)
    codes = {code.key: code for code in store.codes.values()}
    assert sorted(codes) == ["A1", "A2", "A4", "A6"]
    assert (codes["A1"].code_state, codes["A1"].activated_at) == (CodeState.AVAILABLE, NOW)
    assert codes["A4"].custom_code_info == {"n": 4} and codes["A2"].custom_code_info is None
    assert len({code.redemption_code_id for code in codes.values()}) == 4


async def test_an_import_cut_short_keeps_every_line_before_the_cut() -> None:
    store = FakeStore()
    head = lines("scanCode", *(f"C{n}" for n in range(5)))
    too_long = [b"X" * (bulk.MAX_LINE_BYTES + 1)]
    with pytest.raises(DomainError) as stopped:
        await Importer(store, lambda: NOW, batch=2).run("gems", "csv", chunks_of(head + too_long))
    assert "stopped after line 6" in stopped.value.message
    assert sorted(code.key for code in store.codes.values()) == [f"C{n}" for n in range(5)]


async def test_a_hashed_campaigns_import_keeps_keys_and_masked_codes_only() -> None:
    store = FakeStore()
    keys = CodeKeys("secret")
    importer = Importer(store, lambda: NOW, keys, hashed=True, batch=2)
    report = await importer.run("vault", "csv", chunks_of(lines("scanCode", *"ABCDE")))
    assert report.added == 5
    codes = list(store.codes.values())
    assert {code.scan_code for code in codes} == {f"••••{c}" for c in "ABCDE"}
    assert {code.key for code in codes} == {keys.key(c, hashed=True) for c in "ABCDE"}
