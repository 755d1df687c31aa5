"""Campaigns as the services read them on their hot paths: through a short-lived cache."""

from __future__ import annotations

import time
from collections.abc import Callable

from shared.domain.model import Campaign, CampaignFilter
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.throttling import FailureLimits, strictest
from shared.ports import Campaigns

LISTING_PAGE = 500


class CampaignCache:
    """Reuses a campaign read, and the failure limits every campaign sets, for `ttl_s`;
    campaign edits reach workers within it."""

    def __init__(
        self, store: Campaigns, ttl_s: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._entries: dict[str, tuple[float, Campaign]] = {}
        self._limits: tuple[float, frozenset[str]] | None = None

    async def get(self, code_type: str) -> Campaign:
        """The campaign, or REDEMPTION_CODE_TYPE_NOT_FOUND."""
        hit = self._entries.get(code_type)
        if hit and self._monotonic() - hit[0] < self._ttl_s:
            return hit[1]
        return await self.fresh(code_type)

    async def fresh(self, code_type: str) -> Campaign:
        """The campaign as stored now (and cached from now)."""
        now = self._monotonic()
        campaign = await self._store.get_campaign(code_type)
        if campaign is None:
            raise DomainError(ReasonCode.REDEMPTION_CODE_TYPE_NOT_FOUND, f"no campaign {code_type}")
        self._entries[code_type] = (now, campaign)
        return campaign

    async def strictest_limits(self, limits: FailureLimits) -> FailureLimits:
        """`limits` (the global ones), made as strict as those of every campaign
        (`throttling.strictest`): the limits of a request that names no campaign."""
        specs = await self._campaign_limits()
        return strictest(limits, *(limits.for_campaign(spec) for spec in sorted(specs)))

    async def _campaign_limits(self) -> frozenset[str]:
        """The failure limits campaigns set (`Campaign.failure_limits`), each once, from
        the campaigns' listing."""
        hit = self._limits
        if hit and self._monotonic() - hit[0] < self._ttl_s:
            return hit[1]
        now = self._monotonic()
        specs: set[str] = set()
        listed = 0
        while page := await self._store.list_campaigns(
            CampaignFilter(), skip=listed, limit=LISTING_PAGE
        ):
            specs.update(c.failure_limits for c in page if c.failure_limits)
            listed += len(page)
            if len(page) < LISTING_PAGE:
                break
        self._limits = (now, frozenset(specs))
        return self._limits[1]
