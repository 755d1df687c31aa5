"""Bulk import and export of inventories: CSV or NDJSON, streamed in constant memory.

An import file has one code a line: CSV with a header naming `scanCode` and
optionally `codeState` (`Inactive`, the default, or `Available`) and
`customCodeInfo` (a JSON object), or NDJSON objects with the same fields.
Importing is idempotent per (codeType, scanCode): a code already there is
counted `unchanged` and left as it is. Every rejected line is reported with
its number and reason. A file that cannot be read to its end (a line too
long, a body over the import's limit) stops the import at the last whole line
read: every line before it is imported, none after, and the refusal says so.

A CSV export prefixes a cell a spreadsheet would run as a formula with a
single quote (OWASP, CSV injection); an import takes that quote off again, so
an export imports back unchanged.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from services.intake.queries import personal_campaign
from shared.clock import Clock
from shared.domain.codekeys import PLAIN, CodeKeys
from shared.domain.model import Code, NewId, new_code
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState
from shared.messages import CallerInfo, CodeRecord, describe
from shared.ports import Store

BATCH = 1_000
MAX_REPORTED_ERRORS = 10_000
MAX_LINE_BYTES = 64 * 1024
# What a spreadsheet reads as the start of a formula (OWASP, CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CSV_COLUMNS = (
    "scanCode",
    "codeState",
    "customCodeInfo",
    "redemptionCodeId",
    "version",
    "redeemedByUserId",
    "createdAt",
    "activatedAt",
    "redeemedAt",
)


class ImportRow(BaseModel):
    scanCode: str
    codeState: CodeState = CodeState.INACTIVE
    customCodeInfo: CallerInfo | None = None


@dataclass
class RowError:
    line: int
    reasonCode: int
    reason: str


@dataclass
class ImportReport:
    rows: int = 0
    added: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    last_line: int = 0  # the number of the last line read

    def refuse(self, line: int, error: DomainError) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(RowError(line, int(error.reason), error.message))

    def stopped(self, error: DomainError) -> DomainError:
        """The refusal of an import that `error` stopped, saying what was imported."""
        if not self.rows:
            return DomainError(error.reason, f"{error.message}; nothing was imported")
        return DomainError(
            error.reason,
            f"{error.message}; the import stopped after line {self.last_line}: the"
            f" {self.rows} rows up to it were processed ({self.added} added, {self.unchanged}"
            f" unchanged, {self.rejected} rejected), none after it (an import is idempotent:"
            " the file may be sent again)",
        )


async def numbered_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[int, str]]:
    """The lines of a streamed UTF-8 body, numbered from 1, never all in memory."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending, number = "", 0
    async for chunk in chunks:
        pending += decoder.decode(chunk)
        *complete, pending = pending.split("\n")
        if len(pending) > MAX_LINE_BYTES:
            raise DomainError(
                ReasonCode.INVALID_PARAMETER_VALUE,
                f"line {number + len(complete) + 1} is longer than {MAX_LINE_BYTES}",
            )
        for line in complete:
            number += 1
            yield number, line.rstrip("\r")
    pending += decoder.decode(b"", final=True)
    if pending.strip():
        yield number + 1, pending.rstrip("\r")


def _cells(line: str) -> list[str]:
    """A CSV line's cells; a line the csv module cannot read (a bare CR in it) is refused."""
    try:
        return next(csv.reader([line]))
    except csv.Error as exc:
        raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, f"not a CSV line: {exc}") from None


def _csv_row(header: list[str], line: str) -> dict[str, Any]:
    values = _cells(line)
    if len(values) != len(header):
        raise DomainError(
            ReasonCode.INVALID_PARAMETER_VALUE,
            f"{len(values)} fields where the header has {len(header)}",
        )
    cells = zip(header, map(_unquoted, values), strict=True)
    row: dict[str, Any] = {k: v for k, v in cells if v != ""}
    if "customCodeInfo" in row:
        row["customCodeInfo"] = _json(row["customCodeInfo"])
    return row


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, "not valid JSON") from None
    except RecursionError:
        raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, "JSON nested too deeply") from None


def _row(values: dict[str, Any]) -> ImportRow:
    try:
        row = ImportRow.model_validate(values)
    except ValidationError as exc:
        raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, describe(exc)) from None
    return row


async def _rows(
    fmt: str, chunks: AsyncIterable[bytes]
) -> AsyncIterator[tuple[int, ImportRow | DomainError]]:
    """Each data line's number and row, or why it is none; a CSV file's header first.

    Raises when the file cannot be read on (its header, a line too long, its size).
    """
    header: list[str] | None = None
    async for number, line in numbered_lines(chunks):
        if not line.strip():
            continue
        if fmt == "csv" and header is None:
            header = _header(line)
            continue
        try:
            row: ImportRow | DomainError = _row(
                _csv_row(header or [], line) if fmt == "csv" else _object(line)
            )
        except DomainError as error:
            row = error
        yield number, row


def _header(line: str) -> list[str]:
    header = [name.strip() for name in _cells(line)]
    if "scanCode" not in header:
        raise DomainError(
            ReasonCode.INVALID_PARAMETER_VALUE, "the CSV header names no scanCode column"
        )
    return header


class Importer:
    """`hashed`: the campaign keeps only its codes' keys (by `keys`) and masked forms."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        new_id: NewId,
        keys: CodeKeys = PLAIN,
        *,
        hashed: bool = False,
    ) -> None:
        self._store = store
        self._clock = clock
        self._new_id = new_id
        self._keys = keys
        self._hashed = hashed

    async def run(self, code_type: str, fmt: str, chunks: AsyncIterable[bytes]) -> ImportReport:
        report = ImportReport()
        batch: list[Code] = []
        try:
            async for number, row in _rows(fmt, chunks):
                report.rows += 1
                report.last_line = number
                try:
                    batch.append(self._code(code_type, row))
                except DomainError as error:
                    report.refuse(number, error)
                if len(batch) >= BATCH:
                    await self._flush(batch, report)
        except DomainError as error:
            await self._flush(batch, report)
            raise report.stopped(error) from None
        await self._flush(batch, report)
        return report

    def _code(self, code_type: str, row: ImportRow | DomainError) -> Code:
        """The row's new code; a line that held no row raises why."""
        if isinstance(row, DomainError):
            raise row
        return new_code(
            code_type,
            row.scanCode,
            row.codeState,
            row.customCodeInfo,
            now=self._clock(),
            new_id=self._new_id,
            keys=self._keys,
            hashed=self._hashed,
        )

    async def _flush(self, batch: list[Code], report: ImportReport) -> None:
        added = await self._store.add_codes(batch)
        report.added += sum(added)
        report.unchanged += len(added) - sum(added)
        batch.clear()


def _object(line: str) -> dict[str, Any]:
    value = _json(line)
    if not isinstance(value, dict):
        raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, "each line must be a JSON object")
    return value


async def export_lines(batches: AsyncIterable[list[Code]], fmt: str) -> AsyncIterator[bytes]:
    """Codes as CSV (with a header, CRLF line ends) or NDJSON, a batch at a time."""
    if fmt == "csv":
        yield _csv_lines([list(CSV_COLUMNS)])
    async for codes in batches:
        records = (CodeRecord.of(code) for code in codes)
        if fmt == "csv":
            yield _csv_lines(_csv_values(r) for r in records)
        else:
            yield b"".join(r.model_dump_json().encode() + b"\n" for r in records)


def _csv_values(record: CodeRecord) -> list[object]:
    row = record.model_dump(mode="json")
    if row["customCodeInfo"] is not None:
        row["customCodeInfo"] = json.dumps(row["customCodeInfo"], separators=(",", ":"))
    return ["" if row[c] is None else _quoted(row[c]) for c in CSV_COLUMNS]


def _quoted(cell: object) -> object:
    """A text cell a spreadsheet would run as a formula, made text by a leading quote."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def _unquoted(cell: str) -> str:
    """A cell as it was before `_quoted`."""
    if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS):
        return cell[1:]
    return cell


def _csv_lines(rows: Iterable[list[object]]) -> bytes:
    out = io.StringIO()
    # CRLF, as RFC 4180 has it: a cell holding a bare CR is then quoted, not split.
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


class Bulk:
    """A personal campaign's codes, imported or exported in bulk."""

    def __init__(self, store: Store, clock: Clock, new_id: NewId, keys: CodeKeys) -> None:
        self._store = store
        self._clock = clock
        self._new_id = new_id
        self._keys = keys

    async def import_codes(
        self, code_type: str, fmt: str, chunks: AsyncIterable[bytes]
    ) -> ImportReport:
        campaign = await personal_campaign(self._store, code_type)
        if campaign.hash_codes:
            self._keys.check_hashing()
        importer = Importer(
            self._store, self._clock, self._new_id, self._keys, hashed=campaign.hash_codes
        )
        return await importer.run(code_type, fmt, chunks)

    async def export(self, code_type: str, fmt: str) -> AsyncIterator[bytes]:
        """Every code of the campaign as lines; a campaign not there is refused first."""
        await personal_campaign(self._store, code_type)
        return export_lines(self._store.codes_of(code_type), fmt)
