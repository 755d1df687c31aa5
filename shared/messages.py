"""Wire models: every body that crosses HTTP or AMQP, with its schema version.

Within a schema version, changes only add optional fields; inbound models
ignore fields they do not know so that newer senders stay readable.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, ValidationError
from pydantic.alias_generators import to_camel

from shared.clock import to_ms
from shared.domain import jsonmaps
from shared.domain.fulfillment import AsyncResponse
from shared.domain.identifiers import printable
from shared.domain.model import Code, Redemption, RedemptionStatus
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState

SCHEMA_VERSION: Literal[1] = 1
MAX_BODY_BYTES = 64 * 1024

Id = Annotated[str, Field(min_length=1, max_length=128)]
UserId = Annotated[Id, AfterValidator(printable)]
ScanCodeText = Annotated[str, Field(min_length=1, max_length=128)]
Info = dict[str, JsonValue]
# What a caller may send as a free-form map (or value): JSON within `jsonmaps`' bounds.
CallerInfo = Annotated[Info, AfterValidator(jsonmaps.checked)]
CallerJson = Annotated[JsonValue, AfterValidator(jsonmaps.checked)]
# Epoch milliseconds, up to the end of year 9999 (what a datetime holds).
EpochMs = Annotated[int, Field(ge=0, le=253_402_300_799_999, description="epoch milliseconds")]


M = TypeVar("M", bound=BaseModel)


class WireModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class CodeRecord(WireModel):
    """A code as callers and observers see it (reference field names)."""

    scanCode: str
    codeType: str
    redemptionCodeId: str
    version: int
    codeState: CodeState
    customCodeInfo: Info | None = None
    customRedemptionInfo: Info | None = None
    redeemedByUserId: str | None = None
    redemptionId: str | None = None
    invalidationReason: str | None = None
    createdAt: EpochMs | None = None
    activatedAt: EpochMs | None = None
    redeemedAt: EpochMs | None = None
    invalidatedAt: EpochMs | None = None
    updatedAt: EpochMs | None = None
    attempt: int = 0
    attemptedAt: EpochMs | None = None
    attemptState: str | None = None
    response: Info | None = None
    errorCode: str | None = None
    errorMsg: str | None = None
    deadlineAt: EpochMs | None = Field(None, description="when the current attempt times out")
    nextPollAt: EpochMs | None = None
    retryAt: EpochMs | None = Field(None, description="when the next attempt starts")

    @classmethod
    def of(cls, code: Code) -> CodeRecord:
        return cls(
            scanCode=code.scan_code,
            codeType=code.code_type,
            redemptionCodeId=code.redemption_code_id,
            version=code.version,
            codeState=code.code_state,
            customCodeInfo=_info(code.custom_code_info),
            customRedemptionInfo=_info(code.custom_redemption_info),
            redeemedByUserId=code.redeemed_by_user_id,
            redemptionId=code.redemption_id,
            invalidationReason=code.invalidation_reason,
            createdAt=to_ms(code.created_at),
            activatedAt=to_ms(code.activated_at),
            redeemedAt=to_ms(code.redeemed_at),
            invalidatedAt=to_ms(code.invalidated_at),
            updatedAt=to_ms(code.updated_at),
            attempt=code.attempt,
            attemptedAt=to_ms(code.attempted_at),
            attemptState=code.attempt_state.value if code.attempt_state else None,
            response=_info(code.response),
            errorCode=code.error_code,
            errorMsg=code.error_msg,
            deadlineAt=to_ms(code.deadline_at),
            nextPollAt=to_ms(code.next_poll_at),
            retryAt=to_ms(code.retry_at),
        )


def _info(info: Any) -> Info | None:
    return dict(info) if info is not None else None


class Command(WireModel):
    """A command's body: snake_case in Python, camelCase (its alias) on the wire. Strict:
    a value of another JSON type than its field's is refused, not converted (`true` is
    no attempt, `"7"` no count)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True, strict=True
    )


class RedeemCommand(Command):
    """`RedeemCode`: the body of `POST /v1/redemptions`, and `redeem` on `redemption.commands`."""

    schema_version: Literal[1] = SCHEMA_VERSION
    user_id: UserId = Field(description="the user on whose behalf the code is redeemed")
    scan_code: ScanCodeText = Field(description="the code as the user typed it")
    code_type: Id | None = Field(None, description="the campaign; found from the code if absent")
    custom_redemption_info: CallerInfo | None = None
    request_id: Id | None = Field(
        None, description="idempotency key: the same userId and requestId redeem once"
    )


class AsyncAnswer(Command):
    """`ProcessAsynchronousResponse`: a fulfillment partner's answer for one attempt.

    Over HTTP the path names the redemption; over AMQP `AsyncResponseCommand` carries it.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    attempt: int = Field(ge=0, description="the attempt answered (0-based), as in the request")
    async_response: CallerJson = Field(
        description="the handler's result map: success, complete, customRedemptionInfo,"
        " errorCode, errorMsg"
    )
    scan_code: ScanCodeText | None = None
    redemption_code_id: Id | None = None
    code_type: Id | None = None

    def for_redemption(self, redemption_id: str) -> AsyncResponse:
        return AsyncResponse(
            redemption_id=redemption_id,
            attempt=self.attempt,
            response=self.async_response,
            scan_code=self.scan_code,
            redemption_code_id=self.redemption_code_id,
            code_type=self.code_type,
        )


class AsyncResponseCommand(AsyncAnswer):
    """`ProcessAsynchronousResponse` over AMQP: `async-response` on `redemption.commands`."""

    redemption_id: Id


class RedemptionJob(WireModel):
    """A validated redemption on the work queue, for a worker to carry out."""

    schemaVersion: Literal[1] = SCHEMA_VERSION
    redemptionId: Id
    requestId: Id
    userId: Id
    scanCode: ScanCodeText
    codeType: Id | None = None
    customRedemptionInfo: Info | None = None
    acceptedAt: EpochMs
    replyTo: str | None = Field(None, description="queue to send the outcome to")
    correlationId: str | None = None
    keyId: str | None = Field(None, description="the API key that asked, for throttling")
    clientAddress: str | None = Field(None, description="the HTTP caller's address")


class RedemptionRecord(WireModel):
    """One redemption attempt, as `GET /v1/redemptions/{id}` and replies give it."""

    schemaVersion: Literal[1] = SCHEMA_VERSION
    redemptionId: str
    requestId: str
    userId: str
    scanCode: str
    codeType: str | None = None
    status: RedemptionStatus
    reasonCode: int | None = None
    reasonName: str | None = None
    message: str | None = None
    attempt: int = 0
    acceptedAt: EpochMs
    updatedAt: EpochMs
    completedAt: EpochMs | None = None
    code: CodeRecord | None = None

    @classmethod
    def of(cls, r: Redemption, *, reveal: bool = False) -> RedemptionRecord:
        """As the caller sees it; with `reveal`, as operators do (the real reason of a
        refusal told uniformly)."""
        reason, message = (r.reason_code, r.message) if reveal else r.reason_as_told
        return cls(
            redemptionId=r.redemption_id,
            requestId=r.request_id,
            userId=r.user_id,
            scanCode=r.scan_code,
            codeType=r.code_type,
            status=r.status,
            reasonCode=int(reason) if reason else None,
            reasonName=reason.name if reason else None,
            message=message,
            attempt=r.attempt,
            acceptedAt=to_ms(r.accepted_at) or 0,
            updatedAt=to_ms(r.updated_at) or 0,
            completedAt=to_ms(r.completed_at),
            code=CodeRecord.of(r.code) if r.code else None,
        )


class CodeEventMessage(WireModel):
    """A code's change of state, on `redemption.events` with key `code.<state>`."""

    eventId: str = Field(description="stable: a redelivered event carries the same id")
    eventType: str = Field(description="e.g. CodeRedeemed")
    occurredAt: EpochMs
    schemaVersion: Literal[1] = SCHEMA_VERSION
    redemptionId: str | None = None
    userId: str | None = None
    code: CodeRecord


class JobMessage(WireModel):
    """A background job for a worker: `GenerateCodes`, stored under `jobId`."""

    schemaVersion: Literal[1] = SCHEMA_VERSION
    jobId: Id


class ErrorBody(WireModel):
    """Every refusal: HTTP status, stable reason code, and what to do about it."""

    status: int
    reasonCode: int
    reasonName: str
    message: str


def describe(error: ValidationError) -> str:
    """A one-line account of what is wrong with a body, for the caller."""
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def parse(model: type[M], body: bytes) -> M:
    """Parse a message body by its wire names, or raise INVALID_PARAMETER_VALUE saying why."""
    if len(body) > MAX_BODY_BYTES:
        raise DomainError(
            ReasonCode.INVALID_PARAMETER_VALUE, f"body is larger than {MAX_BODY_BYTES} bytes"
        )
    try:
        return model.model_validate_json(body, by_name=False)
    except ValidationError as exc:
        raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, describe(exc)) from None
