"""The personal-code state machine of the design, as data."""

from enum import StrEnum

from shared.domain.reasons import DomainError, ReasonCode


class CodeState(StrEnum):
    INACTIVE = "Inactive"
    AVAILABLE = "Available"
    IN_PROGRESS = "InProgress"
    REDEEMED = "Redeemed"
    INVALIDATED = "Invalidated"
    FAILED = "Failed"


class Action(StrEnum):
    ACTIVATE = "activate"
    REDEEM = "redeem"
    SUCCEED = "succeed"
    FAIL = "fail"
    RETRY = "retry"
    INVALIDATE = "invalidate"
    RESET = "reset"


S = CodeState
A = Action

ALLOWED: dict[tuple[CodeState, Action], CodeState] = {
    (S.INACTIVE, A.ACTIVATE): S.AVAILABLE,
    (S.INACTIVE, A.INVALIDATE): S.INVALIDATED,
    (S.AVAILABLE, A.REDEEM): S.IN_PROGRESS,
    (S.AVAILABLE, A.INVALIDATE): S.INVALIDATED,
    (S.IN_PROGRESS, A.SUCCEED): S.REDEEMED,
    (S.IN_PROGRESS, A.FAIL): S.FAILED,
    (S.FAILED, A.RETRY): S.IN_PROGRESS,
    (S.FAILED, A.INVALIDATE): S.INVALIDATED,
}

# An operator's reset puts any code not held by a redemption back to one of these.
RESETTABLE = frozenset({S.INACTIVE, S.AVAILABLE, S.REDEEMED, S.INVALIDATED, S.FAILED})
RESET_TARGETS = frozenset({S.INACTIVE, S.AVAILABLE})

# Why an action is refused in a state, where the table above has no edge.
_REFUSALS: dict[CodeState, ReasonCode] = {
    S.INACTIVE: ReasonCode.REDEMPTION_CODE_NOT_ACTIVE,
    S.AVAILABLE: ReasonCode.REDEMPTION_CODE_ACTIVE,
    S.IN_PROGRESS: ReasonCode.REDEMPTION_IN_PROGRESS,
    S.REDEEMED: ReasonCode.REDEMPTION_CODE_REDEEMED,
    S.INVALIDATED: ReasonCode.REDEMPTION_CODE_INVALID,
    S.FAILED: ReasonCode.REDEMPTION_FAILED,
}
_REFUSALS_BY_ACTION: dict[Action, ReasonCode] = {
    A.SUCCEED: ReasonCode.REDEMPTION_CODE_NOT_IN_PROGRESS,
    A.FAIL: ReasonCode.REDEMPTION_CODE_NOT_IN_PROGRESS,
    A.RETRY: ReasonCode.REDEMPTION_CODE_ATTEMPT_ERROR,
}

# The routing-key suffix of the event each target state produces.
EVENT_NAMES: dict[CodeState, str] = {
    S.INACTIVE: "inactive",
    S.AVAILABLE: "activated",
    S.IN_PROGRESS: "inprogress",
    S.REDEEMED: "redeemed",
    S.INVALIDATED: "invalidated",
    S.FAILED: "failed",
}


class IllegalTransition(DomainError):
    def __init__(self, state: CodeState, action: Action, reason: ReasonCode) -> None:
        super().__init__(reason, f"cannot {action.value} a code that is {state.value}")
        self.state = state
        self.action = action


def target(state: CodeState, action: Action, reset_to: CodeState | None = None) -> CodeState:
    """The state `action` leads to from `state`, or the typed refusal."""
    if action is A.RESET:
        return _reset(state, reset_to)
    try:
        return ALLOWED[(state, action)]
    except KeyError:
        reason = _REFUSALS_BY_ACTION.get(action, _REFUSALS[state])
        raise IllegalTransition(state, action, reason) from None


def _reset(state: CodeState, to: CodeState | None) -> CodeState:
    if to not in RESET_TARGETS:
        raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, "codes reset to Inactive, Available")
    if state not in RESETTABLE:
        raise IllegalTransition(state, A.RESET, ReasonCode.REDEMPTION_IN_PROGRESS)
    return to
