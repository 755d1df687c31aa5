"""Fulfillment attempts over time: deadlines, polls, retries with backoff.

Pure: given a campaign, a code's current attempt and a handler's answer, it
decides the fields the store writes. A code waiting on anything carries
`timer_at`, the instant a worker must next look at it. Timers are data in
the store, so they outlive every process.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.domain.backoff import compute_backoff
from shared.domain.fulfillment import Result
from shared.domain.model import AttemptState, Campaign, Code
from shared.domain.states import CodeState

# errorCode recorded when an attempt runs past the campaign's allowed time.
TIMED_OUT = "ASYNC_PROCESSING_TIMEOUT"


def _after(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)


def started(campaign: Campaign, now: datetime, lease_s: float) -> dict[str, Any]:
    """Fields of an attempt that opens at `now`, its handler not called yet.

    The first look is at the end of the opener's lease: should it die before
    it calls, another worker calls then (see `calling`).
    """
    deadline = _after(now, campaign.timeout_s)
    return {
        "attempted_at": now,
        "deadline_at": deadline,
        "next_poll_at": None,
        "retry_at": None,
        "timer_at": min(deadline, _after(now, lease_s)),
        "attempt_state": AttemptState.STARTING,
        "response": None,
        "error_code": None,
        "error_msg": None,
    }


def calling(campaign: Campaign, now: datetime, lease_s: float) -> dict[str, Any]:
    """Fields of an attempt whose handler is called at `now`; written, on the condition
    that the attempt is still `STARTING`, before the call, so that one call is made.

    The allowed processing time runs from the call. The first look is at the
    deadline, or, for an asynchronous handler, at the end of the caller's
    lease, so that if the worker making the call dies another one polls.
    """
    deadline = _after(now, campaign.timeout_s)
    first_look = min(deadline, _after(now, lease_s)) if campaign.is_async else deadline
    return {
        "attempt_state": AttemptState.RUNNING,
        "deadline_at": deadline,
        "timer_at": first_look,
    }


def lease(code: Code, now: datetime, lease_s: float) -> datetime:
    """Where a worker moves a due timer while it acts on it: should it die, the
    timer is due again when the lease ends, never later than the deadline."""
    end = _after(now, lease_s)
    if code.deadline_at is not None and code.deadline_at > now:
        return min(code.deadline_at, end)
    return end


def waiting(campaign: Campaign, code: Code, answer: Result, now: datetime) -> dict[str, Any]:
    """Fields of an attempt whose handler answered `complete: false`: poll again later."""
    next_poll = _after(now, campaign.poll_every_s)
    deadline = code.deadline_at or next_poll
    return {
        "next_poll_at": next_poll,
        "timer_at": min(next_poll, deadline),
        "attempt_state": AttemptState.WAITING,
        "response": answer.as_response(),
    }


def succeeded(answer: Result) -> dict[str, Any]:
    """Fields of an attempt that succeeded; nothing is left to wait for."""
    return {
        "deadline_at": None,
        "next_poll_at": None,
        "timer_at": None,
        "attempt_state": AttemptState.SUCCEEDED,
        "response": answer.as_response(),
    }


def failed(
    campaign: Campaign,
    code: Code,
    answer: Result,
    now: datetime,
    unit: float,
    *,
    timed_out: bool = False,
) -> dict[str, Any]:
    """Fields of a failed attempt: a retry after the backoff, or none left.

    `unit` is uniform in [0, 1) and scales the backoff's jitter.
    """
    retry_at = None
    if code.attempt < campaign.max_retries:
        retry_at = _after(now, compute_backoff(campaign.retry_backoff, code.attempt, unit))
    return {
        "deadline_at": None,
        "next_poll_at": None,
        "retry_at": retry_at,
        "timer_at": retry_at,
        "attempt_state": AttemptState.TIMED_OUT if timed_out else AttemptState.FAILED,
        "response": answer.as_response(),
    }


def timed_out(campaign: Campaign) -> Result:
    """The answer recorded for an attempt that ran past its deadline."""
    return Result(
        False,
        True,
        None,
        TIMED_OUT,
        f"no complete answer within the allowed {campaign.timeout_s:g} s",
    )


def is_over(code: Code) -> bool:
    """Whether nothing more will happen to the redemption holding `code`: it was
    redeemed, failed with no retry left, or an operator took the code away."""
    if code.code_state is CodeState.FAILED:
        return code.retry_at is None
    return code.code_state is not CodeState.IN_PROGRESS
