"""Campaigns: a code type, its codes' rules of redemption and fulfillment."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from urllib.parse import urlsplit

from shared.domain.backoff import RetryPolicy
from shared.domain.conditions import (
    Condition,
    Conditions,
    CountBelow,
    Equals,
    LowerBound,
    UpperBound,
    holds,
)
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
    # The webhook is a partner on a private network, for tests: plain http allowed.
    private_test_partner: bool = False
    is_async: bool = False
    max_retries: int = 0
    timeout_s: float = 30.0
    poll_interval_s: float | None = None
    retry_backoff: RetryPolicy = field(default_factory=RetryPolicy)
    is_disabled: bool = False
    redemption_count: int = 0
    # Failed redemptions allowed, in place of the global limits (`throttling.parse_limits`).
    failure_limits: str | None = None
    # Refusals a guess gets told as one (`throttling.as_told`); None: the global default.
    uniform_refusals: bool | None = None
    # Personal codes kept only as a keyed hash and a masked form (`codekeys`); set at
    # creation, never changed.
    hash_codes: bool = False

    @property
    def is_shared(self) -> bool:
        return self.code_use_type is CodeUseType.MULTI

    @property
    def poll_every_s(self) -> float:
        """Seconds between polls of an asynchronous handler."""
        return self.poll_interval_s or DEFAULT_POLL_INTERVAL_S

    def check_window(self) -> None:
        """Refuse a validity window that ends before it starts."""
        start, end = self.valid_start, self.valid_end
        if start is not None and end is not None and end <= start:
            raise DomainError(
                ReasonCode.INVALID_PARAMETER_VALUE, "validEnd must be after validStart"
            )

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
        elif self.private_test_partner and transport != "webhook":
            problem = "privateTestPartner applies to webhooks only"
        if problem:
            raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, problem)
        self.check_webhook_url()

    def check_webhook_url(self) -> None:
        """Refuse a webhook that is not https, unless the campaign is marked for a private
        test partner (which then may use plain http)."""
        scheme = urlsplit(self.webhook_url or "").scheme.lower()
        if self.webhook_url is None or scheme == "https":
            return
        if scheme == "http" and self.private_test_partner:
            return
        raise DomainError(
            ReasonCode.INSECURE_WEBHOOK_URL,
            "webhookUrl must be https, unless privateTestPartner is true (then http will do)",
        )

    def check_hashing(self) -> None:
        """Refuse hashed codes where there are no personal codes to hash."""
        if self.hash_codes and self.is_shared:
            raise DomainError(
                ReasonCode.INVALID_PARAMETER_VALUE,
                "hashCodes applies to personal codes: a MULTI campaign's scanCode is its own",
            )

    def check_redeemable(self, now: datetime) -> None:
        """Refuse a redemption the campaign does not allow at `now`."""
        if self.is_disabled:
            raise DomainError(
                ReasonCode.REDEMPTION_CODE_TYPE_DISABLED, f"campaign {self.code_type} is disabled"
            )
        started, ending = in_window(now)
        before, after = not started.holds(self), not ending.holds(self)
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


def in_window(at: datetime) -> tuple[LowerBound, UpperBound]:
    """A campaign's validity window holds `at`: from `valid_start`, inclusive, to
    `valid_end`, exclusive; either end, unset, is open."""
    return LowerBound("valid_start", at), UpperBound("valid_end", at)


def slot_open(now: datetime) -> Conditions:
    """Which shared campaigns give a redemption slot at `now`: not disabled, inside
    their window, and with redemptions left if `max_redemptions` counts them."""
    return (
        Equals("is_disabled", False),
        *in_window(now),
        CountBelow("redemption_count", "max_redemptions"),
    )


@dataclass(frozen=True)
class CampaignFilter:
    """Which campaigns a listing shows; None matches anything."""

    code_use_type: CodeUseType | None = None
    valid_at: datetime | None = None
    is_disabled: bool | None = None

    def conditions(self) -> Conditions:
        found: list[Condition] = []
        if self.code_use_type is not None:
            found.append(Equals("code_use_type", self.code_use_type))
        if self.is_disabled is not None:
            found.append(Equals("is_disabled", self.is_disabled))
        if self.valid_at is not None:
            found += in_window(self.valid_at)
        return tuple(found)

    def matches(self, campaign: Campaign) -> bool:
        return holds(self.conditions(), campaign)


def slot_refusal(campaign: Campaign, now: datetime) -> DomainError:
    """Why a shared campaign gave no slot: closed, or every redemption taken."""
    campaign.check_redeemable(now)
    return DomainError(
        ReasonCode.MULTI_USE_CODE_MAX_REDEMPTIONS_REACHED,
        f"campaign {campaign.code_type} has reached its {campaign.max_redemptions} redemptions",
    )


def code_type_taken(code_type: str) -> DomainError:
    """The refusal of a campaign whose code type another campaign has."""
    return DomainError(ReasonCode.CODE_TYPE_EXISTS, f"campaign {code_type} exists")


def shared_scan_code_taken(scan_code: str | None) -> DomainError:
    """The refusal of a shared campaign whose scan code another shared campaign has."""
    return DomainError(
        ReasonCode.SCAN_CODE_EXISTS, f"another shared campaign has scan code {scan_code}"
    )
