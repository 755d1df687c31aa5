"""Bulk import and export of inventories: CSV or NDJSON, streamed in constant memory.

An import file has one code a line: CSV with a header naming `scanCode` and
optionally `codeState` (`Inactive`, the default, or `Available`) and
`customCodeInfo` (a JSON object), or NDJSON objects with the same fields.
Importing is idempotent per (codeType, scanCode): a code already there is
counted `unchanged` and left as it is. Every rejected line is reported with
its number and reason. A file that cannot be read to its end (a line too
long, a body over the import's limit) stops the import at the last whole line
read: every line before it is imported, none after, and the refusal says so.

A CSV cell that starts with a quote and then what a spreadsheet reads as a
formula is taken as the cell after the quote, which an export put there
(`export`): an export imports back unchanged.

At disk speed: lines are read a chunk at a time; a line of a scan code and a
state (most of an inventory) is checked at once, any other by `ImportRow`; a
batch's codes are made like the first of their state (`generation.alike`),
with time-ordered ids, and the next batch is read while the store adds this
one. Export is `export`'s.
"""

from __future__ import annotations

import asyncio
import codecs
import csv
import json
import secrets
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from services.intake.export import EXPORT_BATCH, export_lines, unquoted
from services.intake.queries import personal_campaign
from shared.clock import Clock
from shared.domain.codekeys import PLAIN, CodeKeys, shown
from shared.domain.generation import RandomBytes, alike, collection_paused, time_ordered_ids
from shared.domain.model import Code, JsonMap, NewId, new_code
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState
from shared.messages import CallerInfo, describe
from shared.ports import Jobs, Store

BATCH = 5_000  # rows a transaction: the store's write lock is held that long
MAX_REPORTED_ERRORS = 10_000
MAX_LINE_BYTES = 64 * 1024


class ImportRow(BaseModel):
    scanCode: str
    codeState: CodeState = CodeState.INACTIVE
    customCodeInfo: CallerInfo | None = None


class Fields(NamedTuple):
    """A line's fields, checked as `ImportRow` checks them."""

    scan_code: str
    state: CodeState
    info: JsonMap | None


_STATES = {state.value: state for state in CodeState}


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


async def numbered_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[int, list[str]]]:
    """The lines of a streamed UTF-8 body, a chunk's whole lines at a time with the number
    of the first (counted from 1), never all in memory."""
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
        yield number + 1, [line.rstrip("\r") for line in complete]
        number += len(complete)
    pending += decoder.decode(b"", final=True)
    if pending.strip():
        yield number + 1, [pending.rstrip("\r")]


def _cells(line: str) -> list[str]:
    """A CSV line's cells; a line the csv module cannot read (a bare CR in it) is refused."""
    if '"' not in line and "\r" not in line and "\0" not in line:
        return line.split(",")  # as the csv module reads a line with no quotes
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
    cells = zip(header, map(unquoted, values) if "'" in line else values, strict=True)
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


def _fields(values: dict[str, Any]) -> Fields:
    """A line's fields: a scan code and a state are checked at once, anything else by
    `ImportRow` (which says what is wrong)."""
    scan, state = values.get("scanCode"), values.get("codeState", CodeState.INACTIVE.value)
    plain = values.get("customCodeInfo") is None
    if type(scan) is str and type(state) is str and state in _STATES and plain:
        return Fields(scan, _STATES[state], None)
    try:
        row = ImportRow.model_validate(values)
    except ValidationError as exc:
        raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, describe(exc)) from None
    return Fields(row.scanCode, row.codeState, row.customCodeInfo)


async def _rows(
    fmt: str, chunks: AsyncIterable[bytes]
) -> AsyncIterator[list[tuple[int, Fields | DomainError]]]:
    """Each data line's number and fields, or why it has none, a chunk's lines at a time;
    a CSV file's header first.

    Raises when the file cannot be read on (its header, a line too long, its size).
    """
    header: list[str] | None = None
    async for first, lines in numbered_lines(chunks):
        rows: list[tuple[int, Fields | DomainError]] = []
        with collection_paused():
            for number, line in enumerate(lines, first):
                if not line.strip():
                    continue
                if fmt == "csv" and header is None:
                    header = _header(line)
                    continue
                try:
                    row: Fields | DomainError = _fields(
                        _csv_row(header or [], line) if fmt == "csv" else _object(line)
                    )
                except DomainError as error:
                    row = error
                rows.append((number, row))
        yield rows


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
        keys: CodeKeys = PLAIN,
        *,
        hashed: bool = False,
        random_bytes: RandomBytes = secrets.token_bytes,
        batch: int = BATCH,
    ) -> None:
        self._store = store
        self._clock = clock
        self._keys = keys
        self._hashed = hashed
        self._random_bytes = random_bytes
        self._batch_size = batch

    async def run(self, code_type: str, fmt: str, chunks: AsyncIterable[bytes]) -> ImportReport:
        report = ImportReport()
        adding = _Adding(self._store, report)
        batch = self._batch(code_type)
        stopped: DomainError | None = None
        try:
            try:
                async for rows in _rows(fmt, chunks):
                    with collection_paused():
                        for number, row in rows:
                            batch.take(number, row, report)
                    if len(batch) >= self._batch_size:  # by at most a chunk's lines
                        await adding.add(batch.codes(self._random_bytes))
                        batch = self._batch(code_type)
            except DomainError as error:  # the file cannot be read on: what was read is imported
                stopped = error
            await adding.add(batch.codes(self._random_bytes))
            await adding.wait()
        finally:
            await adding.end()
        if stopped is not None:
            raise report.stopped(stopped) from None
        return report

    def _batch(self, code_type: str) -> _Batch:
        return _Batch(self._clock(), code_type, self._keys, self._hashed)


class _Batch:
    """The codes of a batch of lines, made at `now`: each like the first of its state,
    which `new_code` made (and so checked), with its own id, scan code, key and info."""

    def __init__(self, now: datetime, code_type: str, keys: CodeKeys, hashed: bool) -> None:
        self._now = now
        self._code_type = code_type
        self._keys = keys
        self._hashed = hashed
        self._firsts: dict[CodeState, Code] = {}
        self._lines: list[tuple[Code, str, str, JsonMap | None]] = []

    def __len__(self) -> int:
        return len(self._lines)

    def take(self, number: int, row: Fields | DomainError, report: ImportReport) -> None:
        """Take line `number`'s fields, or report why it has none or its code cannot be."""
        report.rows += 1
        report.last_line = number
        try:
            self._add(row)
        except DomainError as error:
            report.refuse(number, error)

    def _add(self, row: Fields | DomainError) -> None:
        if isinstance(row, DomainError):
            raise row
        key = self._keys.key(row.scan_code, hashed=self._hashed)
        first = self._firsts.get(row.state) or self._first(row)
        self._lines.append((first, shown(row.scan_code, hashed=self._hashed), key, row.info))

    def _first(self, row: Fields) -> Code:
        first = new_code(
            self._code_type,
            row.scan_code,
            row.state,
            None,
            now=self._now,
            new_id=str,  # each code of the batch gets an id of its own (`codes`)
            keys=self._keys,
            hashed=self._hashed,
        )
        self._firsts[row.state] = first
        return first

    def codes(self, random_bytes: RandomBytes) -> list[Code]:
        ids = time_ordered_ids(len(self._lines), self._now, random_bytes)
        with collection_paused():
            return [
                alike(
                    first,
                    redemption_code_id=code_id,
                    scan_code=scan,
                    key=key,
                    custom_code_info=info,
                )
                for code_id, (first, scan, key, info) in zip(ids, self._lines, strict=True)
            ]


class _Adding:
    """Batches of codes added in turn, into `report`; a batch is added while the next is
    read and made."""

    def __init__(self, store: Jobs, report: ImportReport) -> None:
        self._store = store
        self._report = report
        self._adding: asyncio.Future[list[bool]] | None = None

    async def add(self, codes: list[Code]) -> None:
        await self.wait()
        if codes:
            self._adding = asyncio.ensure_future(self._store.add_codes(codes))
            await asyncio.sleep(0)  # under way before the next lines are read, however they come

    async def wait(self) -> None:
        """Until the batch being added is, counted."""
        adding, self._adding = self._adding, None
        if adding is not None:
            added = await adding
            self._report.added += sum(added)
            self._report.unchanged += len(added) - sum(added)

    async def end(self) -> None:
        """Until the batch being added ends, if the import stopped before waiting for it."""
        if self._adding is not None:
            await asyncio.gather(self._adding, return_exceptions=True)


def _object(line: str) -> dict[str, Any]:
    value = _json(line)
    if not isinstance(value, dict):
        raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, "each line must be a JSON object")
    return value


class Bulk:
    """A personal campaign's codes, imported or exported in bulk."""

    def __init__(self, store: Store, clock: Clock, new_id: NewId, keys: CodeKeys) -> None:
        """`new_id` names no code: imported codes' ids are time-ordered (`Importer`)."""
        self._store = store
        self._clock = clock
        self._keys = keys

    async def import_codes(
        self, code_type: str, fmt: str, chunks: AsyncIterable[bytes]
    ) -> ImportReport:
        campaign = await personal_campaign(self._store, code_type)
        if campaign.hash_codes:
            self._keys.check_hashing()
        importer = Importer(self._store, self._clock, self._keys, hashed=campaign.hash_codes)
        return await importer.run(code_type, fmt, chunks)

    async def export(self, code_type: str, fmt: str) -> AsyncIterator[bytes]:
        """Every code of the campaign as lines; a campaign not there is refused first."""
        await personal_campaign(self._store, code_type)
        return export_lines(self._store.codes_of(code_type, batch=EXPORT_BATCH), fmt)
