"""The transitions of a code's state machine, each the `Change` a store applies
atomically with its event; nothing here writes or sends anything."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

from shared.domain.codes import Change, Claim, Code, CodeEvent, HistoryEntry, reset_fields
from shared.domain.states import EVENT_NAMES, Action, CodeState, target
from shared.domain.types import JsonMap, NewId


def _change(
    state: CodeState,
    action: Action,
    *,
    now: datetime,
    new_id: NewId,
    by: str,
    fields: JsonMap,
    redemption_id: str | None = None,
    user_id: str | None = None,
    reason: str | None = None,
    reset_to: CodeState | None = None,
) -> Change:
    to_state = target(state, action, reset_to)
    event = CodeEvent(new_id(), EVENT_NAMES[to_state], now, redemption_id, user_id)
    entry = HistoryEntry(now, action, state, to_state, by, redemption_id, reason)
    return Change(state, to_state, fields, event, entry)


def claim(
    claim: Claim, *, now: datetime, new_id: NewId, attempt_fields: JsonMap | None = None
) -> Change:
    """Available -> InProgress: the code is leased to this redemption.

    `attempt_fields` start the first fulfillment attempt (see `attempts.started`).
    """
    fields = {
        "redemption_id": claim.redemption_id,
        "redeemed_by_user_id": claim.user_id,
        "custom_redemption_info": claim.custom_redemption_info,
        "attempt": 0,
        "attempted_at": now,
        "error_code": None,
        "error_msg": None,
        **(attempt_fields or {}),
    }
    return _change(
        CodeState.AVAILABLE,
        Action.REDEEM,
        now=now,
        new_id=new_id,
        by=claim.user_id,
        fields=fields,
        redemption_id=claim.redemption_id,
        user_id=claim.user_id,
    )


def succeed(
    claim: Claim,
    info: JsonMap | None,
    *,
    now: datetime,
    new_id: NewId,
    attempt_fields: JsonMap | None = None,
) -> Change:
    """InProgress -> Redeemed, keeping what fulfillment granted."""
    fields: dict[str, Any] = {"redeemed_at": now, **(attempt_fields or {})}
    if info is not None:
        fields["custom_redemption_info"] = info
    return _change(
        CodeState.IN_PROGRESS,
        Action.SUCCEED,
        now=now,
        new_id=new_id,
        by=claim.user_id,
        fields=fields,
        redemption_id=claim.redemption_id,
        user_id=claim.user_id,
    )


def fail(
    claim: Claim,
    error_code: str,
    error_msg: str,
    *,
    now: datetime,
    new_id: NewId,
    attempt_fields: JsonMap | None = None,
) -> Change:
    """InProgress -> Failed, with the error recorded (and, in `attempt_fields`,
    when the next attempt is due, if any)."""
    fields = {"error_code": error_code, "error_msg": error_msg, **(attempt_fields or {})}
    return _change(
        CodeState.IN_PROGRESS,
        Action.FAIL,
        now=now,
        new_id=new_id,
        by=claim.user_id,
        fields=fields,
        redemption_id=claim.redemption_id,
        user_id=claim.user_id,
        reason=error_msg,
    )


def retry(
    claim: Claim,
    next_attempt: int,
    attempt_fields: JsonMap,
    *,
    scheduled: datetime,
    now: datetime,
    new_id: NewId,
) -> Change:
    """Failed -> InProgress: attempt `next_attempt` of the same redemption starts, if
    it is still the retry `scheduled` then (a cancelled retry never starts)."""
    change = _change(
        CodeState.FAILED,
        Action.RETRY,
        now=now,
        new_id=new_id,
        by=claim.user_id,
        fields={**attempt_fields, "attempt": next_attempt},
        redemption_id=claim.redemption_id,
        user_id=claim.user_id,
        reason=f"attempt {next_attempt}",
    )
    return dataclasses.replace(change, expects={"retry_at": scheduled})


def activate(code: Code, info: JsonMap | None, *, now: datetime, new_id: NewId, by: str) -> Change:
    """Inactive -> Available; `info`, when given, replaces `customCodeInfo`."""
    fields: dict[str, Any] = {"activated_at": now}
    if info is not None:
        fields["custom_code_info"] = info
    return _change(code.code_state, Action.ACTIVATE, now=now, new_id=new_id, by=by, fields=fields)


def invalidate(code: Code, reason: str | None, *, now: datetime, new_id: NewId, by: str) -> Change:
    """Any non-terminal, unleased state -> Invalidated, with the reason kept."""
    return _change(
        code.code_state,
        Action.INVALIDATE,
        now=now,
        new_id=new_id,
        by=by,
        fields={"invalidated_at": now, "invalidation_reason": reason},
        reason=reason,
    )


def reset(code: Code, to: CodeState, *, now: datetime, event_id: str, by: str) -> Change:
    """An operator's reset of one code (see `states.RESETTABLE`)."""
    return reset_from(code.code_state, to, now=now, event_id=event_id, by=by)


def reset_from(state: CodeState, to: CodeState, *, now: datetime, event_id: str, by: str) -> Change:
    """An operator's reset of a code in `state`: what `reset` gives for any such code
    (a store resetting many in one update takes `state` and `event_id` from each)."""
    return _change(
        state,
        Action.RESET,
        now=now,
        new_id=lambda: event_id,
        by=by,
        fields=reset_fields(to, now),
        reason=f"reset to {to.value}",
        reset_to=to,
    )
