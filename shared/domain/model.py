"""Campaigns, codes and redemptions, and the transitions between their states.

Pure: no I/O. Every operation returns the `Change` a store must apply
atomically, together with the event it records; nothing here sends anything.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from shared.domain.backoff import RetryPolicy
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import EVENT_NAMES, Action, CodeState, target

JsonMap = Mapping[str, Any]
NewId = Callable[[], str]


DEFAULT_POLL_INTERVAL_S = 5.0
TRANSPORTS = frozenset({"local", "amqp", "webhook"})


class CodeUseType(StrEnum):
    SINGLE = "SINGLE"
    MULTI = "MULTI"


class RedemptionStatus(StrEnum):
    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    REDEEMED = "Redeemed"
    FAILED = "Failed"
    REJECTED = "Rejected"

    @property
    def is_terminal(self) -> bool:
        return self in (
            RedemptionStatus.REDEEMED,
            RedemptionStatus.FAILED,
            RedemptionStatus.REJECTED,
        )


@dataclass(frozen=True)
class Campaign:
    """A code type: a named set of codes and the rules for redeeming them."""

    code_type: str
    code_use_type: CodeUseType
    created_at: datetime
    updated_at: datetime
    version: int = 1
    description: str | None = None
    scan_code: str | None = None
    valid_start: datetime | None = None
    valid_end: datetime | None = None
    max_redemptions: int | None = None
    custom_code_info: JsonMap | None = None
    handler: str | None = None
    handler_transport: str = "local"
    webhook_url: str | None = None
    is_async: bool = False
    max_retries: int = 0
    timeout_s: float = 30.0
    poll_interval_s: float | None = None
    retry_backoff: RetryPolicy = field(default_factory=RetryPolicy)
    is_disabled: bool = False
    redemption_count: int = 0

    @property
    def is_shared(self) -> bool:
        return self.code_use_type is CodeUseType.MULTI

    @property
    def poll_interval(self) -> float:
        """Seconds between polls of an asynchronous handler."""
        return self.poll_interval_s or DEFAULT_POLL_INTERVAL_S

    def check_fulfillment(self) -> None:
        """Refuse fulfillment settings that cannot work together."""
        transport = self.handler_transport
        problem = None
        if transport not in TRANSPORTS:
            problem = f"handlerTransport must be one of {', '.join(sorted(TRANSPORTS))}"
        elif (transport == "webhook") != (self.webhook_url is not None):
            problem = "webhookUrl is required with handlerTransport webhook, and only then"
        elif self.handler is None and (self.is_async or self.max_retries or transport != "local"):
            problem = "async, maxRetries and handlerTransport need a handler"
        elif self.poll_interval_s is not None and not self.is_async:
            problem = "pollInterval applies to async handlers only"
        elif self.retry_backoff.max < self.retry_backoff.initial:
            problem = "retryBackoff.max must be at least retryBackoff.initial"
        if problem:
            raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, problem)

    def check_redeemable(self, now: datetime) -> None:
        """Refuse a redemption the campaign does not allow at `now`."""
        if self.is_disabled:
            raise DomainError(
                ReasonCode.REDEMPTION_CODE_TYPE_DISABLED, f"campaign {self.code_type} is disabled"
            )
        before = self.valid_start is not None and now < self.valid_start
        after = self.valid_end is not None and now >= self.valid_end
        if self.code_use_type is CodeUseType.SINGLE and (before or after):
            raise DomainError(
                ReasonCode.SINGLE_USE_CODE_REDEMPTION_ATTEMPTED_OUTSIDE_TIMEFRAME,
                f"campaign {self.code_type} is outside its validity window",
            )
        if before:
            raise DomainError(
                ReasonCode.MULTI_USE_CODE_REDEMPTION_ATTEMPTED_BEFORE_START,
                f"campaign {self.code_type} has not started",
            )
        if after:
            raise DomainError(
                ReasonCode.MULTI_USE_CODE_REDEMPTION_ATTEMPTED_AFTER_END,
                f"campaign {self.code_type} has ended",
            )


@dataclass(frozen=True)
class CampaignFilter:
    """Which campaigns a listing shows; None matches anything."""

    code_use_type: CodeUseType | None = None
    valid_at: datetime | None = None
    is_disabled: bool | None = None

    def matches(self, campaign: Campaign) -> bool:
        at = self.valid_at
        return (
            self.code_use_type in (None, campaign.code_use_type)
            and self.is_disabled in (None, campaign.is_disabled)
            and (
                at is None
                or (
                    (campaign.valid_start is None or campaign.valid_start <= at)
                    and (campaign.valid_end is None or at < campaign.valid_end)
                )
            )
        )


def slot_refusal(campaign: Campaign, now: datetime) -> DomainError:
    """Why a shared campaign gave no slot: closed, or every redemption taken."""
    campaign.check_redeemable(now)
    return DomainError(
        ReasonCode.MULTI_USE_CODE_MAX_REDEMPTIONS_REACHED,
        f"campaign {campaign.code_type} has reached its {campaign.max_redemptions} redemptions",
    )


@dataclass(frozen=True)
class CodeRef:
    """Where a code lives: a personal code by its scan code, a shared one by its user."""

    code_type: str
    scan_norm: str
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
    """A personal code, as stored."""

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


@dataclass(frozen=True)
class Claim:
    """Who asks to redeem, on whose behalf, with what."""

    redemption_id: str
    user_id: str
    custom_redemption_info: JsonMap | None = None


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


def reset(code: Code, to: CodeState, *, now: datetime, event_id: str, by: str) -> Change:
    """An operator's reset of one code (see `states.RESETTABLE`)."""
    return _change(
        code.code_state,
        Action.RESET,
        now=now,
        new_id=lambda: event_id,
        by=by,
        fields=reset_fields(to, now),
        reason=f"reset to {to.value}",
        reset_to=to,
    )


def check_version(code: Code, version: int) -> None:
    """Optimistic concurrency for operator edits."""
    if code.version != version:
        raise DomainError(
            ReasonCode.REDEMPTION_CODE_VERSION_MISMATCH,
            f"code is at version {code.version}, not {version}",
        )


def refusal(code: Code, user_id: str) -> DomainError:
    """Why `user_id` cannot claim `code`, which is not Available."""
    state = code.code_state
    if state is CodeState.FAILED and code.retry_at is not None:
        state = CodeState.IN_PROGRESS  # failed, but its next attempt is on its way
    elif state is CodeState.FAILED:
        return DomainError(
            ReasonCode.REDEMPTION_FAILED_MAX_RETRIES,
            "the redemption of this code failed and has no retries left",
        )
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
}
_SELF_MESSAGES = {
    CodeState.REDEEMED: "you have already redeemed this code",
    CodeState.IN_PROGRESS: "your redemption of this code is in progress",
    CodeState.AVAILABLE: "code is available",
}


@dataclass(frozen=True)
class Redemption:
    """One redemption attempt: a user's request to redeem a scan code."""

    redemption_id: str
    request_id: str
    user_id: str
    scan_code: str
    accepted_at: datetime
    updated_at: datetime
    code_type: str | None = None
    status: RedemptionStatus = RedemptionStatus.PENDING
    custom_redemption_info: JsonMap | None = None
    reason_code: ReasonCode | None = None
    message: str | None = None
    attempt: int = 0
    code: Code | None = None
    completed_at: datetime | None = None
    replies: tuple[ReplyTo, ...] = field(default=())

    @property
    def claim(self) -> Claim:
        return Claim(self.redemption_id, self.user_id, self.custom_redemption_info)


# What recording a redemption's outcome changes; the rest stays as it was opened.
OUTCOME_FIELDS = (
    "status",
    "reason_code",
    "message",
    "attempt",
    "code",
    "code_type",
    "updated_at",
    "completed_at",
)


def with_outcome(stored: Redemption, outcome: Redemption) -> Redemption:
    """`stored` with the outcome `outcome` records (see `Store.finish_redemption`)."""
    return dataclasses.replace(stored, **{name: getattr(outcome, name) for name in OUTCOME_FIELDS})


@dataclass(frozen=True)
class ReplyTo:
    """A caller that asked to be told the outcome (AMQP `reply_to`)."""

    queue: str
    correlation_id: str


class JobState(StrEnum):
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"


@dataclass(frozen=True)
class Job:
    """`GenerateCodes` in the background: `quantity` new codes, `done` so far."""

    job_id: str
    code_type: str
    quantity: int
    code_state: CodeState
    algorithm_name: str
    algorithm_details: JsonMap
    created_at: datetime
    updated_at: datetime
    prefix: str | None = None
    custom_code_info: JsonMap | None = None
    done: int = 0
    state: JobState = JobState.RUNNING
    error: str | None = None
