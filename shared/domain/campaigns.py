"""Campaigns: a code type, its codes' rules of redemption and fulfillment."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from shared.domain.backoff import RetryPolicy
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.types import JsonMap

DEFAULT_POLL_INTERVAL_S = 5.0
TRANSPORTS = frozenset({"local", "amqp", "webhook"})


class CodeUseType(StrEnum):
    SINGLE = "SINGLE"
    MULTI = "MULTI"


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
