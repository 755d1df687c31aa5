"""Every allowed and every forbidden transition of the personal-code state machine."""

import itertools

import pytest

from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import ALLOWED, Action, CodeState, IllegalTransition, target

S, A, R = CodeState, Action, ReasonCode

EXPECTED_EDGES = {
    (S.INACTIVE, A.ACTIVATE): S.AVAILABLE,
    (S.INACTIVE, A.INVALIDATE): S.INVALIDATED,
    (S.AVAILABLE, A.REDEEM): S.IN_PROGRESS,
    (S.AVAILABLE, A.INVALIDATE): S.INVALIDATED,
    (S.IN_PROGRESS, A.SUCCEED): S.REDEEMED,
    (S.IN_PROGRESS, A.FAIL): S.FAILED,
    (S.FAILED, A.RETRY): S.IN_PROGRESS,
    (S.FAILED, A.INVALIDATE): S.INVALIDATED,
}

EXPECTED_REFUSALS = {
    (S.INACTIVE, A.REDEEM): R.REDEMPTION_CODE_NOT_ACTIVE,
    (S.AVAILABLE, A.ACTIVATE): R.REDEMPTION_CODE_ACTIVE,
    (S.IN_PROGRESS, A.ACTIVATE): R.REDEMPTION_IN_PROGRESS,
    (S.IN_PROGRESS, A.REDEEM): R.REDEMPTION_IN_PROGRESS,
    (S.IN_PROGRESS, A.INVALIDATE): R.REDEMPTION_IN_PROGRESS,
    (S.REDEEMED, A.ACTIVATE): R.REDEMPTION_CODE_REDEEMED,
    (S.REDEEMED, A.REDEEM): R.REDEMPTION_CODE_REDEEMED,
    (S.REDEEMED, A.INVALIDATE): R.REDEMPTION_CODE_REDEEMED,
    (S.INVALIDATED, A.ACTIVATE): R.REDEMPTION_CODE_INVALID,
    (S.INVALIDATED, A.REDEEM): R.REDEMPTION_CODE_INVALID,
    (S.INVALIDATED, A.INVALIDATE): R.REDEMPTION_CODE_INVALID,
    (S.FAILED, A.ACTIVATE): R.REDEMPTION_FAILED,
    (S.FAILED, A.REDEEM): R.REDEMPTION_FAILED,
}


def test_the_table_is_exactly_the_design() -> None:
    assert ALLOWED == EXPECTED_EDGES


@pytest.mark.parametrize(("edge", "expected"), EXPECTED_EDGES.items())
def test_every_allowed_transition_reaches_its_state(
    edge: tuple[CodeState, Action], expected: CodeState
) -> None:
    assert target(*edge) is expected


FORBIDDEN = [
    pair
    for pair in itertools.product(S, A)
    if pair not in EXPECTED_EDGES and pair[1] is not A.RESET
]


@pytest.mark.parametrize("edge", FORBIDDEN)
def test_every_forbidden_transition_is_a_typed_refusal(edge: tuple[CodeState, Action]) -> None:
    state, action = edge
    with pytest.raises(IllegalTransition) as refused:
        target(state, action)
    if action in (A.SUCCEED, A.FAIL):
        assert refused.value.reason is R.REDEMPTION_CODE_NOT_IN_PROGRESS
    elif action is A.RETRY:
        assert refused.value.reason is R.REDEMPTION_CODE_ATTEMPT_ERROR
    else:
        assert refused.value.reason is EXPECTED_REFUSALS[edge]
    assert state.value in refused.value.message


def test_forbidden_transitions_cover_every_pair_not_allowed() -> None:
    assert len(FORBIDDEN) + len(EXPECTED_EDGES) == len(S) * (len(A) - 1)  # reset: below
    assert all(
        pair in EXPECTED_REFUSALS
        for pair in FORBIDDEN
        if pair[1] not in (A.SUCCEED, A.FAIL, A.RETRY)
    )


@pytest.mark.parametrize("state", list(S))
@pytest.mark.parametrize("to", list(S))
def test_an_operator_resets_any_code_not_in_progress_to_inactive_or_available(
    state: CodeState, to: CodeState
) -> None:
    if state is S.IN_PROGRESS and to in (S.INACTIVE, S.AVAILABLE):
        with pytest.raises(IllegalTransition) as refused:
            target(state, A.RESET, to)
        assert refused.value.reason is R.REDEMPTION_IN_PROGRESS
    elif to in (S.INACTIVE, S.AVAILABLE):
        assert target(state, A.RESET, to) is to
    else:
        with pytest.raises(DomainError) as refused_target:
            target(state, A.RESET, to)
        assert refused_target.value.reason is R.INVALID_PARAMETER_VALUE
