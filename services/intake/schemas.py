"""HTTP request and response bodies of the intake API (reference field names)."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)
from pydantic.alias_generators import to_camel

from services.intake.paging import PageQuery
from shared.clock import from_ms, to_ms
from shared.domain.backoff import RetryPolicy
from shared.domain.model import (
    Campaign,
    Code,
    CodeUseType,
    HistoryEntry,
    Job,
    Place,
    Redemption,
)
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState
from shared.domain.throttling import Limit, Lockout, parse_limits
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
_EPOCH_MS: TypeAdapter[int] = TypeAdapter(EpochMs)
# Campaign fields whose domain attribute is not named as the field is.
_DOMAIN_NAMES = {"async_": "is_async", "timeout": "timeout_s", "poll_interval": "poll_interval_s"}


class Body(BaseModel):
    """A request body: camelCase on the wire, unknown fields refused, and values of another
    JSON type than the document gives refused too (`false` is no instant, `"7"` no count)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        extra="forbid",
        frozen=True,
        strict=True,
    )


class Out(BaseModel):
    """A response body: camelCase on the wire."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True
    )


def instant(ms: int | None) -> datetime | None:
    """An epoch-ms input as an instant; one outside 1970 to 9999 is refused (40660)."""
    return None if ms is None else _instant(ms)


def _instant(ms: int) -> datetime:
    try:
        return from_ms(_EPOCH_MS.validate_python(ms))
    except ValidationError as exc:
        message = f"{ms} is not an instant in epoch milliseconds: {exc.errors()[0]['msg']}"
        raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, message) from None


def place(before: str | None) -> Place | None:
    """Where a page of recent redemptions starts: after `<ms>.<redemptionId>`, the
    `before` of the page before, or before the instant `<ms>`."""
    if before is None:
        return None
    at, dot, redemption_id = before.partition(".")
    if dot and not redemption_id:
        raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, f"{before!r} names no redemption")
    try:
        ms = int(at)
    except ValueError:
        message = f"{before!r} is neither an instant in epoch milliseconds nor a page's end"
        raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, message) from None
    return Place(_instant(ms), redemption_id or None)


def place_token(last: Redemption) -> str:
    """The `before` that goes on after `last`."""
    return f"{to_ms(last.accepted_at)}.{last.redemption_id}"


class RetryBackoffIn(Body):
    """`retryBackoff`: seconds before retry n+1 = min(max, initial * multiplier**n) + jitter."""

    initial: float = Field(1.0, gt=0, le=86400)
    max: float = Field(300.0, gt=0, le=86400)
    multiplier: float = Field(2.0, ge=1, le=10)
    jitter: float = Field(0.0, ge=0, le=3600)

    def policy(self) -> RetryPolicy:
        return RetryPolicy(self.initial, self.max, self.multiplier, self.jitter)


class RetryBackoffOut(Out):
    initial: float
    max: float
    multiplier: float
    jitter: float


def _limits_parse(spec: str) -> str:
    parse_limits(spec)
    return spec


FailureLimitsSpec = Annotated[
    str,
    Field(
        max_length=200,
        description="failed redemptions allowed per scope in a sliding window, in place of"
        " the global limits: e.g. 'user=5/10m,campaign=1000/1h,key=off' (units s, m, h, d)",
    ),
    AfterValidator(_limits_parse),
]
Transport = Literal["local", "amqp", "webhook"]
WebhookUrl = Annotated[str, Field(max_length=2000, pattern=r"^https?://[^\s]+$")]


class CampaignIn(Body):
    """A new campaign: personal codes (SINGLE), or one shared code (MULTI)."""

    code_type: CodeTypeName
    code_use_type: Literal["SINGLE", "MULTI"] = "SINGLE"
    scan_code: ScanCodeText | None = Field(
        None, description="MULTI only: the one code every user types (at most 20 characters)"
    )
    max_redemptions: int | None = Field(
        None, ge=1, description="MULTI only: how many users may redeem it; null is unlimited"
    )
    description: str | None = Field(None, max_length=1000)
    valid_start: EpochMs | None = None
    valid_end: EpochMs | None = None
    custom_code_info: CallerInfo | None = None
    handler: Id | None = Field(None, description="fulfillment handler name; none redeems at once")
    handler_transport: Transport = "local"
    webhook_url: WebhookUrl | None = Field(
        None, description="webhook transport only; https unless privateTestPartner"
    )
    private_test_partner: bool = Field(
        False,
        description="webhook only: the partner is a private test partner, which may be"
        " reached over plain http (its address must still be allow-listed)",
    )
    async_: bool = Field(False, alias="async", description="the handler may answer later")
    max_retries: int = Field(0, ge=0, le=100, description="failed attempts retried automatically")
    timeout: float = Field(
        30.0, gt=0, le=7 * 86400, description="allowed processing time of an attempt, seconds"
    )
    poll_interval: float | None = Field(
        None, gt=0, le=86400, description="async only: seconds between polls of the handler"
    )
    retry_backoff: RetryBackoffIn = RetryBackoffIn()
    is_disabled: bool = False
    failure_limits: FailureLimitsSpec | None = None
    uniform_refusals: bool | None = Field(
        None,
        description="tell callers every refusal a guess gets as one (40395); null: the"
        " service's default (REDEEM_UNIFORM_REFUSALS)",
    )
    hash_codes: bool = Field(
        False,
        description="SINGLE only, set once: keep only a keyed hash of each code and its last"
        " four characters (every answer shows them masked); generated codes are downloadable"
        " once (needs REDEEM_CODE_SECRET)",
    )

    def domain_fields(self) -> dict[str, object]:
        """The campaign's attributes, as the domain names them."""
        names = type(self).model_fields
        fields = {_DOMAIN_NAMES.get(name, name): getattr(self, name) for name in names}
        fields["code_use_type"] = CodeUseType(self.code_use_type)
        fields["valid_start"] = instant(self.valid_start)
        fields["valid_end"] = instant(self.valid_end)
        fields["retry_backoff"] = self.retry_backoff.policy()
        return fields


class CampaignOut(Out):
    code_type: str
    code_use_type: str
    scan_code: str | None
    max_redemptions: int | None
    redemption_count: int
    description: str | None
    valid_start: EpochMs | None
    valid_end: EpochMs | None
    custom_code_info: Info | None
    handler: str | None
    handler_transport: str
    webhook_url: str | None
    private_test_partner: bool
    async_: bool = Field(alias="async")
    max_retries: int
    timeout: float
    poll_interval: float | None
    retry_backoff: RetryBackoffOut
    is_disabled: bool
    failure_limits: str | None
    uniform_refusals: bool | None
    hash_codes: bool
    version: int
    created_at: EpochMs
    updated_at: EpochMs

    @classmethod
    def of(cls, c: Campaign) -> CampaignOut:
        return cls(
            code_type=c.code_type,
            code_use_type=c.code_use_type.value,
            scan_code=c.scan_code,
            max_redemptions=c.max_redemptions,
            redemption_count=c.redemption_count,
            description=c.description,
            valid_start=to_ms(c.valid_start),
            valid_end=to_ms(c.valid_end),
            custom_code_info=dict(c.custom_code_info) if c.custom_code_info else None,
            handler=c.handler,
            handler_transport=c.handler_transport,
            webhook_url=c.webhook_url,
            private_test_partner=c.private_test_partner,
            async_=c.is_async,
            max_retries=c.max_retries,
            timeout=c.timeout_s,
            poll_interval=c.poll_interval_s,
            retry_backoff=RetryBackoffOut(**dataclasses.asdict(c.retry_backoff)),
            is_disabled=c.is_disabled,
            failure_limits=c.failure_limits,
            uniform_refusals=c.uniform_refusals,
            hash_codes=c.hash_codes,
            version=c.version,
            created_at=to_ms(c.created_at) or 0,
            updated_at=to_ms(c.updated_at) or 0,
        )


class CampaignPage(Out):
    count: int
    page: int
    items: list[CampaignOut]
    more_after: bool
    more_before: bool

    @classmethod
    def of(cls, query: PageQuery, items: list[Campaign], count: int) -> CampaignPage:
        return cls(
            count=count,
            page=query.page,
            items=[CampaignOut.of(c) for c in items],
            more_after=query.page * query.rows < count,
            more_before=query.page > 1,
        )


class CampaignList(Out):
    context: str = Field(description="opaque; GET /v1/campaigns/pages/{context}?pageOffset=N")
    results: CampaignPage


class CampaignPatch(Body):
    """A change to a campaign; `version` must be the campaign's current one."""

    version: int = Field(ge=1)
    description: str | None = Field(None, max_length=1000)
    valid_start: EpochMs | None = None
    valid_end: EpochMs | None = None
    is_disabled: bool | None = None
    max_redemptions: int | None = Field(None, ge=1)
    custom_code_info: CallerInfo | None = None
    handler: Id | None = None
    handler_transport: Transport | None = None
    webhook_url: WebhookUrl | None = None
    private_test_partner: bool | None = None
    async_: bool | None = Field(None, alias="async")
    max_retries: int | None = Field(None, ge=0, le=100)
    timeout: float | None = Field(None, gt=0, le=7 * 86400)
    poll_interval: float | None = Field(None, gt=0, le=86400)
    retry_backoff: RetryBackoffIn | None = None
    failure_limits: FailureLimitsSpec | None = None
    uniform_refusals: bool | None = None

    def domain_fields(self) -> dict[str, object]:
        """The fields the caller sent (null included, e.g. to open a window), as attributes."""
        sent = self.model_fields_set - {"version"}
        required = (
            "is_disabled",
            "handler_transport",
            "private_test_partner",
            "async_",
            "max_retries",
            "timeout",
        )
        for name in (*required, "retry_backoff"):
            if name in sent and getattr(self, name) is None:
                field = type(self).model_fields[name].alias or name
                raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, f"{field} cannot be null")
        fields = {_DOMAIN_NAMES.get(name, name): getattr(self, name) for name in sent}
        for name in ("valid_start", "valid_end"):
            if name in sent:
                fields[name] = instant(getattr(self, name))
        if self.retry_backoff is not None:
            fields["retry_backoff"] = self.retry_backoff.policy()
        return fields


class AddCodeIn(Body):
    scan_code: ScanCodeText
    code_state: Literal["Inactive", "Available"] = "Inactive"
    custom_code_info: CallerInfo | None = None


class ActivateIn(Body):
    custom_code_info: CallerInfo | None = None


class InvalidateIn(Body):
    invalidation_reason: str | None = Field(None, max_length=500)


class UpdateCustomInfoIn(Body):
    version: int = Field(ge=1)
    custom_code_info: CallerInfo


class Accepted(Out):
    redemption_id: str
    request_id: str
    status: str = "Pending"


class HistoryOut(Out):
    at: EpochMs
    action: str
    from_state: str | None
    to_state: str
    by: str
    redemption_id: str | None
    reason: str | None

    @classmethod
    def of(cls, h: HistoryEntry) -> HistoryOut:
        return cls(
            at=to_ms(h.at) or 0,
            action=h.action.value,
            from_state=h.from_state.value if h.from_state else None,
            to_state=h.to_state.value,
            by=h.by,
            redemption_id=h.redemption_id,
            reason=h.reason,
        )


class CodeWithHistory(CodeRecord):
    history: list[HistoryOut]

    @classmethod
    def with_history(cls, code: Code) -> CodeWithHistory:
        record = CodeRecord.of(code).model_dump()
        return cls(**record, history=[HistoryOut.of(h) for h in code.history])


class RedeemedCodes(Out):
    codes: list[CodeRecord]


class Inventory(Out):
    code_type: str
    code_use_type: str
    counts: dict[str, int] = Field(description="codes (shared: users' instances) by codeState")
    total: int
    redemption_count: int | None = None
    max_redemptions: int | None = None

    @classmethod
    def of(cls, campaign: Campaign, counts: dict[CodeState, int]) -> Inventory:
        return cls(
            code_type=campaign.code_type,
            code_use_type=campaign.code_use_type.value,
            counts={state.value: n for state, n in counts.items()},
            total=sum(counts.values()),
            redemption_count=campaign.redemption_count if campaign.is_shared else None,
            max_redemptions=campaign.max_redemptions,
        )


class ResetIn(Body):
    code_state: Literal["Inactive", "Available"]


class Deleted(Out):
    deleted: int


class Reset(Out):
    reset: int


class RecentRedemptions(Out):
    items: list[RedemptionRecord]
    before: str | None = Field(
        description="pass as ?before= for the next, older page; null when there is none"
    )


class RowErrorOut(Out):
    line: int
    reason_code: int
    reason: str


class ImportReportOut(Out):
    rows: int
    added: int
    unchanged: int = Field(description="already there: an import is idempotent")
    rejected: int
    errors: list[RowErrorOut] = Field(description="the first 10,000 rejected lines")


class GenerateIn(Body):
    """`GenerateCodes` (a background job) or, with `inline`, `GenerateCodesInline`."""

    quantity: int = Field(ge=1, le=10_000_000)
    code_state: Literal["Inactive", "Available"] = "Inactive"
    custom_code_info: CallerInfo | None = None
    prefix: str | None = Field(None, max_length=16)
    algorithm_name: str = "FiveByFive"
    algorithm_details_json: CallerInfo = Field(default_factory=dict)
    inline: bool = Field(False, description="generate at once, at most 100 codes")


class GeneratedInline(Out):
    generated_scan_codes: list[str]


class JobOut(Out):
    job_id: str
    code_type: str
    quantity: int
    done: int
    state: str
    error: str | None
    codes_until: EpochMs | None = Field(
        None, description="a campaign with hashCodes: its codes are downloadable once, until"
    )
    handed_out_at: EpochMs | None = Field(
        None, description="a campaign with hashCodes: when its codes were downloaded"
    )
    created_at: EpochMs
    updated_at: EpochMs

    @classmethod
    def of(cls, job: Job) -> JobOut:
        return cls(
            job_id=job.job_id,
            code_type=job.code_type,
            quantity=job.quantity,
            done=job.done,
            state=job.state.value,
            error=job.error,
            codes_until=to_ms(job.codes_until),
            handed_out_at=to_ms(job.handed_out_at),
            created_at=to_ms(job.created_at) or 0,
            updated_at=to_ms(job.updated_at) or 0,
        )


class LimitOut(Out):
    failures: int
    window_seconds: int

    @classmethod
    def of(cls, limit: Limit) -> LimitOut:
        return cls(failures=limit.failures, window_seconds=round(limit.window.total_seconds()))


class LockoutOut(Out):
    """A scope (`user:<id>`, `key:<id>`, `address:<ip>`, `campaign:<codeType>`) with no
    failed redemption left in its window."""

    scope: str
    failures: int
    limit: LimitOut
    retry_after_seconds: int

    @classmethod
    def of(cls, lockout: Lockout) -> LockoutOut:
        return cls(
            scope=lockout.scope,
            failures=lockout.failures,
            limit=LimitOut.of(lockout.limit),
            retry_after_seconds=math.ceil(lockout.retry_after.total_seconds()),
        )


class Lockouts(Out):
    items: list[LockoutOut]
    after: str | None = Field(None, description="the next page starts after this scope")


class Cleared(Out):
    scope: str
    cleared: bool
