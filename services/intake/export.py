"""Export of a campaign's or a job's codes as CSV or NDJSON lines, a batch at a time,
and the rule for CSV cells both ways: a cell a spreadsheet would run as a formula is
prefixed with a single quote on export (OWASP, CSV injection) and the quote taken off
again on import (`bulk`), so an export imports back unchanged."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

from pydantic_core import to_json

from shared.clock import to_ms
from shared.domain.generation import collection_paused
from shared.domain.model import Code, JsonMap

EXPORT_BATCH = 5_000
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


async def export_lines(batches: AsyncIterable[list[Code]], fmt: str) -> AsyncIterator[bytes]:
    """Codes as CSV (with a header, CRLF line ends) or NDJSON, a batch at a time; each line
    as `CodeRecord` has the code (`shared.messages`), written from the code itself."""
    if fmt == "csv":
        yield csv_lines([list(CSV_COLUMNS)])
    async for codes in batches:
        with collection_paused():
            if fmt == "csv":
                lines = csv_lines(_csv_values(code) for code in codes)
            else:
                lines = b"".join(
                    to_json(_record(code), inf_nan_mode="null") + b"\n" for code in codes
                )
        yield lines


def _record(code: Code) -> dict[str, Any]:
    """`CodeRecord.of(code)`'s fields, as it serialises them."""
    return {
        "scanCode": code.scan_code,
        "codeType": code.code_type,
        "redemptionCodeId": code.redemption_code_id,
        "version": code.version,
        "codeState": code.code_state.value,
        "customCodeInfo": _map(code.custom_code_info),
        "customRedemptionInfo": _map(code.custom_redemption_info),
        "redeemedByUserId": code.redeemed_by_user_id,
        "redemptionId": code.redemption_id,
        "invalidationReason": code.invalidation_reason,
        "createdAt": to_ms(code.created_at),
        "activatedAt": to_ms(code.activated_at),
        "redeemedAt": to_ms(code.redeemed_at),
        "invalidatedAt": to_ms(code.invalidated_at),
        "updatedAt": to_ms(code.updated_at),
        "attempt": code.attempt,
        "attemptedAt": to_ms(code.attempted_at),
        "attemptState": code.attempt_state.value if code.attempt_state else None,
        "response": _map(code.response),
        "errorCode": code.error_code,
        "errorMsg": code.error_msg,
        "deadlineAt": to_ms(code.deadline_at),
        "nextPollAt": to_ms(code.next_poll_at),
        "retryAt": to_ms(code.retry_at),
    }


def _map(info: JsonMap | None) -> dict[str, Any] | None:
    return dict(info) if info is not None else None


def _csv_values(code: Code) -> list[object]:
    info = code.custom_code_info
    row = (
        code.scan_code,
        code.code_state.value,
        None if info is None else json.dumps(dict(info), separators=(",", ":")),
        code.redemption_code_id,
        code.version,
        code.redeemed_by_user_id,
        to_ms(code.created_at),
        to_ms(code.activated_at),
        to_ms(code.redeemed_at),
    )
    return ["" if cell is None else quoted(cell) for cell in row]


def quoted(cell: object) -> object:
    """A text cell a spreadsheet would run as a formula, made text by a leading quote."""
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def unquoted(cell: str) -> str:
    """A cell as it was before `quoted`."""
    if cell.startswith("'") and cell[1:].startswith(FORMULA_STARTS):
        return cell[1:]
    return cell


def csv_lines(rows: Iterable[list[object]]) -> bytes:
    out = io.StringIO()
    # CRLF, as RFC 4180 has it: a cell holding a bare CR is then quoted, not split.
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()
