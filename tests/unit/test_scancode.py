"""Scan codes match case-insensitively, ignoring spaces and hyphens."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.scancode import MAX_SCAN_CODE_LENGTH, checked, normalise


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("abc-def-123", "ABCDEF123"),
        ("ABC DEF 123", "ABCDEF123"),
        ("  aBc--dEf\t123 ", "ABCDEF123"),
        ("vfaok-yu7gy-y4ida-jhibz-rtikc", "VFAOKYU7GYY4IDAJHIBZRTIKC"),
    ],
)
def test_typed_and_stored_forms_normalise_alike(typed: str, stored: str) -> None:
    assert normalise(typed) == stored
    assert normalise(stored) == stored


@given(st.text())
def test_normalisation_is_idempotent(text: str) -> None:
    assert normalise(normalise(text)) == normalise(text)


@given(st.text(alphabet="abcXYZ019 -", min_size=1))
def test_case_spaces_and_hyphens_never_matter(text: str) -> None:
    assert normalise(text) == normalise(text.upper().replace("-", " "))


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("", ReasonCode.INVALID_SCAN_CODE),
        (" - - ", ReasonCode.INVALID_SCAN_CODE),
        ("abc$def", ReasonCode.INVALID_SCAN_CODE),
        ("A" * (MAX_SCAN_CODE_LENGTH + 1), ReasonCode.INVALID_SCAN_CODE_LENGTH),
    ],
)
def test_impossible_codes_are_refused_with_a_reason(bad: str, reason: ReasonCode) -> None:
    with pytest.raises(DomainError) as refused:
        checked(bad)
    assert refused.value.reason is reason
