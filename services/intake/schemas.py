"""HTTP request and response bodies of the intake API (reference field names)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.clock import from_ms, to_ms
from shared.domain.backoff import RetryPolicy
from shared.domain.model import Campaign, Code, HistoryEntry, Job
from shared.domain.reasons import DomainError, ReasonCode
from shared.messages import (
    CallerInfo,
    CodeRecord,
    EpochMs,
    Id,
    Info,
    RedemptionRecord,
    ScanCodeText,
)

CodeTypeName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryBackoffIn(Body):
    """`retryBackoff`: seconds before retry n+1 = min(max, initial * multiplier**n) + jitter."""

    initial: float = Field(1.0, gt=0, le=86400)
    max: float = Field(300.0, gt=0, le=86400)
    multiplier: float = Field(2.0, ge=1, le=10)
    jitter: float = Field(0.0, ge=0, le=3600)

    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.initial, self.max, self.multiplier, self.jitter)


class RetryBackoffOut(BaseModel):
    initial: float
    max: float
    multiplier: float
    jitter: float


Transport = Literal["local", "amqp", "webhook"]
WebhookUrl = Annotated[str, Field(max_length=2000, pattern=r"^https?://[^\s]+$")]


class CampaignIn(Body):
    """A new campaign: personal codes (SINGLE), or one shared code (MULTI)."""

    codeType: CodeTypeName
    codeUseType: Literal["SINGLE", "MULTI"] = "SINGLE"
    scanCode: ScanCodeText | None = Field(
        None, description="MULTI only: the one code every user types (at most 20 characters)"
    )
    maxRedemptions: int | None = Field(
        None, ge=1, description="MULTI only: how many users may redeem it; null is unlimited"
    )
    description: str | None = Field(None, max_length=1000)
    validStart: EpochMs | None = None
    validEnd: EpochMs | None = None
    customCodeInfo: CallerInfo | None = None
    handler: Id | None = Field(None, description="fulfillment handler name; none redeems at once")
    handlerTransport: Transport = "local"
    webhookUrl: WebhookUrl | None = Field(None, description="webhook transport only")
    async_: bool = Field(False, alias="async", description="the handler may answer later")
    maxRetries: int = Field(0, ge=0, le=100, description="failed attempts retried automatically")
    timeout: float = Field(
        30.0, gt=0, le=7 * 86400, description="allowed processing time of an attempt, seconds"
    )
    pollInterval: float | None = Field(
        None, gt=0, le=86400, description="async only: seconds between polls of the handler"
    )
    retryBackoff: RetryBackoffIn = RetryBackoffIn()
    isDisabled: bool = False

    def fulfillment_fields(self) -> dict[str, object]:
        return {
            "handler": self.handler,
            "handler_transport": self.handlerTransport,
            "webhook_url": self.webhookUrl,
            "is_async": self.async_,
            "max_retries": self.maxRetries,
            "timeout_s": self.timeout,
            "poll_interval_s": self.pollInterval,
            "retry_backoff": self.retryBackoff.policy(),
        }


class CampaignOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    codeType: str
    codeUseType: str
    scanCode: str | None
    maxRedemptions: int | None
    redemptionCount: int
    description: str | None
    validStart: EpochMs | None
    validEnd: EpochMs | None
    customCodeInfo: Info | None
    handler: str | None
    handlerTransport: str
    webhookUrl: str | None
    async_: bool = Field(alias="async")
    maxRetries: int
    timeout: float
    pollInterval: float | None
    retryBackoff: RetryBackoffOut
    isDisabled: bool
    version: int
    createdAt: EpochMs
    updatedAt: EpochMs

    @classmethod
    def of(cls, c: Campaign) -> CampaignOut:
        return cls(
            codeType=c.code_type,
            codeUseType=c.code_use_type.value,
            scanCode=c.scan_code,
            maxRedemptions=c.max_redemptions,
            redemptionCount=c.redemption_count,
            description=c.description,
            validStart=to_ms(c.valid_start),
            validEnd=to_ms(c.valid_end),
            customCodeInfo=dict(c.custom_code_info) if c.custom_code_info else None,
            handler=c.handler,
            handlerTransport=c.handler_transport,
            webhookUrl=c.webhook_url,
            async_=c.is_async,
            maxRetries=c.max_retries,
            timeout=c.timeout_s,
            pollInterval=c.poll_interval_s,
            retryBackoff=RetryBackoffOut(**dataclasses.asdict(c.retry_backoff)),
            isDisabled=c.is_disabled,
            version=c.version,
            createdAt=to_ms(c.created_at) or 0,
            updatedAt=to_ms(c.updated_at) or 0,
        )


class CampaignPage(BaseModel):
    count: int
    page: int
    items: list[CampaignOut]
    moreAfter: bool
    moreBefore: bool


class CampaignList(BaseModel):
    context: str = Field(description="opaque; GET /v1/campaigns/pages/{context}?pageOffset=N")
    results: CampaignPage


class CampaignPatch(Body):
    """A change to a campaign; `version` must be the campaign's current one."""

    version: int = Field(ge=1)
    description: str | None = Field(None, max_length=1000)
    validStart: EpochMs | None = None
    validEnd: EpochMs | None = None
    isDisabled: bool | None = None
    maxRedemptions: int | None = Field(None, ge=1)
    customCodeInfo: CallerInfo | None = None
    handler: Id | None = None
    handlerTransport: Transport | None = None
    webhookUrl: WebhookUrl | None = None
    async_: bool | None = Field(None, alias="async")
    maxRetries: int | None = Field(None, ge=0, le=100)
    timeout: float | None = Field(None, gt=0, le=7 * 86400)
    pollInterval: float | None = Field(None, gt=0, le=86400)
    retryBackoff: RetryBackoffIn | None = None

    def domain_fields(self) -> dict[str, object]:
        """The fields the caller sent (null included, e.g. to open a window), as attributes."""
        names = {
            "description": "description",
            "validStart": "valid_start",
            "validEnd": "valid_end",
            "isDisabled": "is_disabled",
            "maxRedemptions": "max_redemptions",
            "customCodeInfo": "custom_code_info",
            "handler": "handler",
            "handlerTransport": "handler_transport",
            "webhookUrl": "webhook_url",
            "async_": "is_async",
            "maxRetries": "max_retries",
            "timeout": "timeout_s",
            "pollInterval": "poll_interval_s",
            "retryBackoff": "retry_backoff",
        }
        sent = self.model_fields_set - {"version"}
        fields = {names[key]: getattr(self, key) for key in sent}
        for key in ("validStart", "validEnd"):
            if key in sent:
                fields[names[key]] = instant(getattr(self, key))
        if self.retryBackoff is not None:
            fields["retry_backoff"] = self.retryBackoff.policy()
        required = ("isDisabled", "handlerTransport", "async_", "maxRetries", "timeout")
        for key in required:
            if names[key] in fields and fields[names[key]] is None:
                field = self.model_fields[key].alias or key
                raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, f"{field} cannot be null")
        if "retryBackoff" in sent and self.retryBackoff is None:
            raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, "retryBackoff cannot be null")
        return fields


class AddCodeIn(Body):
    scanCode: ScanCodeText
    codeState: Literal["Inactive", "Available"] = "Inactive"
    customCodeInfo: CallerInfo | None = None


class ActivateIn(Body):
    customCodeInfo: CallerInfo | None = None


class InvalidateIn(Body):
    invalidationReason: str | None = Field(None, max_length=500)


class UpdateCustomInfoIn(Body):
    version: int = Field(ge=1)
    customCodeInfo: CallerInfo


class RedeemIn(Body):
    userId: Id
    scanCode: ScanCodeText
    codeType: Id | None = None
    customRedemptionInfo: CallerInfo | None = None
    requestId: Id | None = None


class Accepted(BaseModel):
    redemptionId: str
    requestId: str
    status: str = "Pending"


class HistoryOut(BaseModel):
    at: EpochMs
    action: str
    fromState: str | None
    toState: str
    by: str
    redemptionId: str | None
    reason: str | None

    @classmethod
    def of(cls, h: HistoryEntry) -> HistoryOut:
        return cls(
            at=to_ms(h.at) or 0,
            action=h.action.value,
            fromState=h.from_state.value if h.from_state else None,
            toState=h.to_state.value,
            by=h.by,
            redemptionId=h.redemption_id,
            reason=h.reason,
        )


class CodeWithHistory(CodeRecord):
    history: list[HistoryOut]

    @classmethod
    def with_history(cls, code: Code) -> CodeWithHistory:
        record = CodeRecord.of(code).model_dump()
        return cls(**record, history=[HistoryOut.of(h) for h in code.history])


class RedeemedCodes(BaseModel):
    codes: list[CodeRecord]


def instant(ms: int | None) -> datetime | None:
    return None if ms is None else from_ms(ms)


class Inventory(BaseModel):
    codeType: str
    codeUseType: str
    counts: dict[str, int] = Field(description="codes (shared: users' instances) by codeState")
    total: int
    redemptionCount: int | None = None
    maxRedemptions: int | None = None


class ResetIn(Body):
    codeState: Literal["Inactive", "Available"]


class Deleted(BaseModel):
    deleted: int


class Reset(BaseModel):
    reset: int


class RecentRedemptions(BaseModel):
    items: list[RedemptionRecord]
    before: EpochMs | None = Field(
        description="pass as ?before= for the next, older page; null when there is none"
    )


class RowErrorOut(BaseModel):
    line: int
    reasonCode: int
    reason: str


class ImportReportOut(BaseModel):
    rows: int
    added: int
    unchanged: int = Field(description="already there: an import is idempotent")
    rejected: int
    errors: list[RowErrorOut] = Field(description="the first 10,000 rejected lines")


class GenerateIn(Body):
    """`GenerateCodes` (a background job) or, with `inline`, `GenerateCodesInline`."""

    quantity: int = Field(ge=1, le=10_000_000)
    codeState: Literal["Inactive", "Available"] = "Inactive"
    customCodeInfo: CallerInfo | None = None
    prefix: str | None = Field(None, max_length=16)
    algorithmName: str = "FiveByFive"
    algorithmDetailsJson: CallerInfo = Field(default_factory=dict)
    inline: bool = Field(False, description="generate at once, at most 100 codes")


class GeneratedInline(BaseModel):
    generatedScanCodes: list[str]


class JobOut(BaseModel):
    jobId: str
    codeType: str
    quantity: int
    done: int
    state: str
    error: str | None
    createdAt: EpochMs
    updatedAt: EpochMs

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            jobId=job.job_id,
            codeType=job.code_type,
            quantity=job.quantity,
            done=job.done,
            state=job.state.value,
            error=job.error,
            createdAt=to_ms(job.created_at) or 0,
            updatedAt=to_ms(job.updated_at) or 0,
        )
