"""One constructor of a new code, used by AddCode, import and generation."""

from datetime import UTC, datetime

import pytest

from shared.domain.model import new_code
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_new_available_code_is_active_from_now_and_keeps_its_scan_code_upper_case() -> None:
    code = new_code("gift", " ab-12 ", CodeState.AVAILABLE, {"k": 1}, now=NOW, new_id=lambda: "i1")
    assert (code.redemption_code_id, code.scan_code, code.code_state) == (
        "i1",
        "AB-12",
        CodeState.AVAILABLE,
    )
    assert (code.activated_at, code.created_at, code.custom_code_info) == (NOW, NOW, {"k": 1})


def test_a_new_inactive_code_is_not_activated() -> None:
    code = new_code("gift", "AB12", CodeState.INACTIVE, None, now=NOW, new_id=lambda: "i1")
    assert code.activated_at is None


@pytest.mark.parametrize("state", [CodeState.REDEEMED, CodeState.IN_PROGRESS, CodeState.FAILED])
def test_a_code_cannot_start_life_in_a_later_state(state: CodeState) -> None:
    with pytest.raises(DomainError) as refused:
        new_code("gift", "AB12", state, None, now=NOW, new_id=lambda: "i1")
    assert refused.value.reason is ReasonCode.INVALID_PARAMETER_VALUE


@pytest.mark.parametrize("scan", ["", "  ", "AB\u00e912", "A" * 500])
def test_a_scan_code_that_can_never_be_a_code_is_refused(scan: str) -> None:
    with pytest.raises(DomainError) as refused:
        new_code("gift", scan, CodeState.AVAILABLE, None, now=NOW, new_id=lambda: "i1")
    assert refused.value.reason in (
        ReasonCode.INVALID_SCAN_CODE,
        ReasonCode.INVALID_SCAN_CODE_LENGTH,
    )
