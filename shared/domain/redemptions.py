"""Redemptions: each RedeemCode request, its status and its outcome."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from shared.domain.codekeys import CodeKeys, masked
from shared.domain.codes import Claim, Code
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.scancode import normalise
from shared.domain.throttling import Caller, as_told
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
    key_id: str | None = None  # the API key that asked (its digest's prefix), over HTTP
    client_address: str | None = None  # the HTTP caller's address
    # The caller is told a guess's refusal as the uniform one (`throttling.as_told`);
    # `reason_code` keeps the real reason, for operators.
    uniform_refusal: bool = False
    # The key of its code, when that is in a campaign that hashes codes: `scan_code` is
    # then masked (see `kept`).
    code_key: str | None = None

    @property
    def key(self) -> str:
        """The key its code is found by, as its record says (see `codekeys`)."""
        return self.code_key or normalise(self.scan_code)

    @property
    def reason_as_told(self) -> tuple[ReasonCode | None, str | None]:
        return as_told(self.reason_code, self.message, uniform=self.uniform_refusal)

    @property
    def caller(self) -> Caller:
        return Caller(self.user_id, self.key_id, self.client_address, self.code_type)

    @property
    def claim(self) -> Claim:
        return Claim(self.redemption_id, self.user_id, self.custom_redemption_info)

    @property
    def given_up(self) -> bool:
        """Ended Failed by a worker that gave its job up at the delivery limit."""
        return (self.status, self.reason_code) == GIVEN_UP


# A give-up's outcome; it yields to a code a copy of the job redeemed meanwhile.
GIVEN_UP = (RedemptionStatus.FAILED, ReasonCode.DELIVERY_LIMIT_EXCEEDED)


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
    "uniform_refusal",
)


@dataclass(frozen=True)
class Place:
    """A place in the listing of recent redemptions, which runs newest first: by
    acceptance, then by id among those accepted in the same millisecond (the stores
    keep instants to the millisecond). A page goes on after the last item of the one
    before, so no two pages share an item and none is skipped; a place without an id
    goes on with everything accepted before its instant."""

    accepted_at: datetime
    redemption_id: str | None = None

    @classmethod
    def of(cls, last: Redemption) -> Place:
        return cls(last.accepted_at, last.redemption_id)


def records(stored: Redemption, outcome: Redemption) -> bool:
    """Whether `outcome` is recorded over `stored`: the first terminal outcome stands,
    except that a redemption given up yields to a code redeemed for it after all (by a
    copy of its job that claimed the code as the other gave up), so that its status
    always agrees with its code."""
    if not stored.status.is_terminal:
        return True
    return stored.given_up and outcome.status is RedemptionStatus.REDEEMED


def with_outcome(stored: Redemption, outcome: Redemption) -> Redemption:
    """`stored` with the outcome `outcome` records (see `Store.finish_redemption`)."""
    return dataclasses.replace(stored, **{name: getattr(outcome, name) for name in OUTCOME_FIELDS})


def kept(redemption: Redemption, keys: CodeKeys) -> Redemption:
    """A redemption of a code in a campaign that hashes codes, as its record keeps it:
    the code masked and its key, never the code (no key when the code can be none, or
    this service has no secret: such a redemption is refused)."""
    if redemption.code_key is not None:
        return redemption
    try:
        key = keys.key(redemption.scan_code, hashed=True)
    except DomainError:
        key = None
    return dataclasses.replace(redemption, scan_code=masked(redemption.scan_code), code_key=key)


@dataclass(frozen=True)
class ReplyTo:
    """A caller that asked to be told the outcome (AMQP `reply_to`)."""

    queue: str
    correlation_id: str


class RedemptionIds:
    """Names redemptions: the same user and request id always name the same redemption.

    The id is an HMAC-SHA256 of the two under a server secret, shaped as a UUID
    (version 8, RFC 9562): whoever lacks the secret cannot compute the id of another
    user's request and take it first. Every intake must use the same secret, or one
    request sent to two of them would be two redemptions.
    """

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("a redemption id secret cannot be empty")
        self._secret = secret.encode()

    def __call__(self, user_id: str, request_id: str) -> str:
        message = f"{user_id}\x1f{request_id}".encode()
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        value = int.from_bytes(digest[:16], "big")
        value &= ~(0xF000 << 64) & ~(0xC000 << 48)  # room for the version and variant
        value |= (0x8000 << 64) | (0x8000 << 48)  # version 8, RFC 9562 variant
        return str(uuid.UUID(int=value))
