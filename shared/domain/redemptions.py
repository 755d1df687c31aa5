"""Redemptions: each RedeemCode request, its status and its outcome."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from shared.domain.codes import Claim, Code
from shared.domain.reasons import ReasonCode
from shared.domain.types import JsonMap


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
