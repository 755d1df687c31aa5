"""Campaigns as the services read them on their hot paths: through a short-lived cache."""

from __future__ import annotations

import time
from collections.abc import Callable

from shared.domain.model import Campaign
from shared.domain.reasons import DomainError, ReasonCode
from shared.ports import Campaigns


class CampaignCache:
    """Reuses a campaign read for `ttl_s`; campaign edits reach workers within it."""

    def __init__(
        self, store: Campaigns, ttl_s: float, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._ttl_s = ttl_s
        self._monotonic = monotonic
        self._entries: dict[str, tuple[float, Campaign]] = {}

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
