"""Scan-code normalisation: case-insensitive, spaces and hyphens ignored."""

import re

from shared.domain.reasons import DomainError, ReasonCode

MAX_SCAN_CODE_LENGTH = 64
_IGNORED = re.compile(r"[\s\-]+")
_ALLOWED = re.compile(r"[0-9A-Z_.]+")


def normalise(scan_code: str) -> str:
    """The form under which a scan code is stored and matched."""
    return _IGNORED.sub("", scan_code).upper()


def checked(scan_code: str) -> str:
    """Normalise `scan_code`, refusing what can never be a code."""
    norm = normalise(scan_code)
    if not norm:
        raise DomainError(ReasonCode.INVALID_SCAN_CODE, "scanCode is empty")
    if len(norm) > MAX_SCAN_CODE_LENGTH:
        raise DomainError(
            ReasonCode.INVALID_SCAN_CODE_LENGTH,
            f"scanCode is longer than {MAX_SCAN_CODE_LENGTH} characters",
        )
    if not _ALLOWED.fullmatch(norm):
        raise DomainError(
            ReasonCode.INVALID_SCAN_CODE,
            "scanCode may hold only letters, digits, '_', '.', spaces and hyphens",
        )
    return norm
