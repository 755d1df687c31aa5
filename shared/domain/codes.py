"""Codes: a personal code or a user's instance of a shared one, how it changes state
(`Change`, applied atomically with its event) and why a claim is refused."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.domain.campaigns import Campaign
from shared.domain.codekeys import PLAIN, CodeKeys, shown
from shared.domain.conditions import Conditions, Differs, Equals, OneOf
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.scancode import normalise
from shared.domain.states import RESETTABLE, Action, CodeState
from shared.domain.types import JsonMap, NewId


@dataclass(frozen=True)
class CodeRef:
    """Where a code lives: a personal code by its key (`CodeKeys`), a shared one by its user."""

    code_type: str
    key: str
    user_id: str | None = None

    @property
    def is_shared(self) -> bool:
        return self.user_id is not None


@dataclass(frozen=True)
class HistoryEntry:
    """One transition in a code's life: when, what, by whom, why."""

    at: datetime
    action: Action
    from_state: CodeState | None
    to_state: CodeState
    by: str
    redemption_id: str | None = None
    reason: str | None = None


class AttemptState(StrEnum):
    """How the current fulfillment attempt stands (`attemptState`)."""

    STARTING = "Starting"  # open, its handler not called yet
    RUNNING = "Running"  # its handler called
    WAITING = "Waiting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    TIMED_OUT = "TimedOut"


@dataclass(frozen=True)
class Code:
    """A personal code, as stored: `scan_code` as shown (masked, if its campaign hashes
    codes), `key` as found (see `codekeys`; left out, the normalised `scan_code`)."""

    redemption_code_id: str
    code_type: str
    scan_code: str
    code_state: CodeState
    created_at: datetime
    updated_at: datetime
    version: int = 1
    custom_code_info: JsonMap | None = None
    custom_redemption_info: JsonMap | None = None
    redeemed_by_user_id: str | None = None
    redemption_id: str | None = None
    invalidation_reason: str | None = None
    activated_at: datetime | None = None
    redeemed_at: datetime | None = None
    invalidated_at: datetime | None = None
    attempt: int = 0
    attempted_at: datetime | None = None
    error_code: str | None = None
    error_msg: str | None = None
    attempt_state: AttemptState | None = None
    response: JsonMap | None = None
    deadline_at: datetime | None = None
    next_poll_at: datetime | None = None
    retry_at: datetime | None = None
    timer_at: datetime | None = None
    job_id: str | None = None
    history: tuple[HistoryEntry, ...] = ()
    key: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", normalise(self.scan_code))


@dataclass(frozen=True)
class CodeEvent:
    """What a change of state tells observers; the code record is added on relay."""

    event_id: str
    name: str
    occurred_at: datetime
    redemption_id: str | None = None
    user_id: str | None = None

    @property
    def routing_key(self) -> str:
        return f"code.{self.name}"

    @property
    def event_type(self) -> str:
        return "Code" + self.name.capitalize()


@dataclass(frozen=True)
class Change:
    """One transition of one code, to be applied atomically with its event.

    `fields` names `Code` attributes; the store sets them, `code_state` and
    `updated_at`, increments `version`, appends `history` and the event, all in
    one update whose filter expects `source` and the values in `expects`
    (`Code` attributes too).
    """

    source: CodeState
    target: CodeState
    fields: JsonMap
    event: CodeEvent
    history: HistoryEntry
    expects: JsonMap = field(default_factory=dict)


def applied(code: Code, change: Change) -> Code:
    """`code` after `change`, as a store must write it."""
    return dataclasses.replace(
        code,
        **change.fields,
        code_state=change.target,
        updated_at=change.event.occurred_at,
        version=code.version + 1,
        history=(*code.history, change.history),
    )


def expected(
    code: Code,
    changes: Sequence[Change],
    redemption_id: str | None,
    version: int | None,
    attempt: int | None = None,
) -> bool:
    """Whether `code` is as the first of `changes` expects it (see `Store.apply`)."""
    first = changes[0]
    return (
        code.code_state is first.source
        and all(getattr(code, name) == value for name, value in first.expects.items())
        and redemption_id in (None, code.redemption_id)
        and version in (None, code.version)
        and attempt in (None, code.attempt)
    )


def on_attempt(
    code: Code,
    redemption_id: str,
    attempt: int,
    state: CodeState,
    attempt_state: AttemptState | None = None,
) -> bool:
    """Whether `code` is on this attempt of this redemption (see `Store.update_attempt`)."""
    return (code.redemption_id, code.attempt, code.code_state) == (
        redemption_id,
        attempt,
        state,
    ) and attempt_state in (None, code.attempt_state)


@dataclass(frozen=True)
class Claim:
    """Who asks to redeem, on whose behalf, with what."""

    redemption_id: str
    user_id: str
    custom_redemption_info: JsonMap | None = None


NEW_CODE_STATES = (CodeState.INACTIVE, CodeState.AVAILABLE)


def new_code(
    code_type: str,
    scan_code: str,
    state: CodeState,
    info: JsonMap | None,
    *,
    now: datetime,
    new_id: NewId,
    job_id: str | None = None,
    keys: CodeKeys = PLAIN,
    hashed: bool = False,
) -> Code:
    """A new personal code, as AddCode, import and generation make it: its scan code
    checked and kept upper-case (`hashed`: only its key and masked form, by `keys`),
    Inactive or Available."""
    key = keys.key(scan_code, hashed=hashed)
    if state not in NEW_CODE_STATES:
        raise DomainError(
            ReasonCode.INVALID_PARAMETER_VALUE, "codeState must be Inactive or Available"
        )
    return Code(
        redemption_code_id=new_id(),
        code_type=code_type,
        scan_code=shown(scan_code, hashed=hashed),
        key=key,
        code_state=state,
        created_at=now,
        updated_at=now,
        activated_at=now if state is CodeState.AVAILABLE else None,
        custom_code_info=info,
        job_id=job_id,
    )


_INSTANCES = uuid.UUID("2f6b1e0a-45c3-4b8e-9d7a-0c5e3f1a8b62")


def instance_of(campaign: Campaign, claim: Claim, now: datetime) -> Code:
    """A user's own copy of a shared code, before its claim (named after the redemption)."""
    return Code(
        redemption_code_id=str(uuid.uuid5(_INSTANCES, claim.redemption_id)),
        code_type=campaign.code_type,
        scan_code=campaign.scan_code or "",
        code_state=CodeState.AVAILABLE,
        created_at=now,
        updated_at=now,
        custom_code_info=campaign.custom_code_info,
    )


def reset_fields(to: CodeState, now: datetime) -> dict[str, Any]:
    """What a reset sets: the code as new, in state `to`, with its history kept."""
    return {
        "redemption_id": None,
        "redeemed_by_user_id": None,
        "redeemed_at": None,
        "custom_redemption_info": None,
        "invalidated_at": None,
        "invalidation_reason": None,
        "activated_at": now if to is CodeState.AVAILABLE else None,
        "attempt": 0,
        "attempted_at": None,
        "error_code": None,
        "error_msg": None,
        "attempt_state": None,
        "response": None,
        "deadline_at": None,
        "next_poll_at": None,
        "retry_at": None,
        "timer_at": None,
    }


def deletable() -> Conditions:
    """Which codes an operator may delete: none a redemption holds (in progress, or
    with a timer running)."""
    return Differs("code_state", CodeState.IN_PROGRESS), Equals("timer_at", None)


def resettable() -> Conditions:
    """Which codes an operator's reset changes: those in a `states.RESETTABLE` state,
    with no timer running."""
    return OneOf("code_state", tuple(sorted(RESETTABLE))), Equals("timer_at", None)


def scan_code_taken(code_type: str, scan_code: str) -> DomainError:
    """The refusal of a code whose campaign has its scan code already."""
    return DomainError(
        ReasonCode.SCAN_CODE_EXISTS, f"campaign {code_type} already has scan code {scan_code}"
    )


def check_version(code: Code, version: int) -> None:
    """Optimistic concurrency for operator edits."""
    if code.version != version:
        raise DomainError(
            ReasonCode.REDEMPTION_CODE_VERSION_MISMATCH,
            f"code is at version {code.version}, not {version}",
        )


def refusal(code: Code, user_id: str) -> DomainError:
    """Why `user_id` cannot claim `code`, which is not Available. A code another user
    claimed is theirs, whatever became of their redemption: a guesser is told no more
    than that (a refusal that counts), and only the user who claimed it learns that
    it failed with no retries left."""
    state = code.code_state
    if state is CodeState.FAILED and code.retry_at is not None:
        state = CodeState.IN_PROGRESS  # failed, but its next attempt is on its way
    if state in (CodeState.INACTIVE, CodeState.INVALIDATED):
        return DomainError(_STATE_REFUSALS[state], f"code is {state.value}")
    if code.redeemed_by_user_id != user_id:
        return DomainError(
            ReasonCode.REDEMPTION_CODE_REDEEMED_BY_OTHER, "code was redeemed by another user"
        )
    return DomainError(_STATE_REFUSALS[state], _SELF_MESSAGES[state])


_STATE_REFUSALS = {
    CodeState.INACTIVE: ReasonCode.REDEMPTION_CODE_NOT_ACTIVE,
    CodeState.INVALIDATED: ReasonCode.REDEMPTION_CODE_INVALID,
    CodeState.REDEEMED: ReasonCode.REDEMPTION_CODE_REDEEMED_BY_SELF,
    CodeState.IN_PROGRESS: ReasonCode.REDEMPTION_IN_PROGRESS,
    CodeState.AVAILABLE: ReasonCode.REDEMPTION_CODE_ACTIVE,
    CodeState.FAILED: ReasonCode.REDEMPTION_FAILED_MAX_RETRIES,
}
_SELF_MESSAGES = {
    CodeState.FAILED: "the redemption of this code failed and has no retries left",
    CodeState.REDEEMED: "you have already redeemed this code",
    CodeState.IN_PROGRESS: "your redemption of this code is in progress",
    CodeState.AVAILABLE: "code is available",
}
