"""The campaigns port: the settings of each inventory, by code type."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from shared.domain.model import Campaign, CampaignFilter


class Campaigns(Protocol):
    async def create_campaign(self, campaign: Campaign) -> None:
        """Store a new campaign; CODE_TYPE_EXISTS if the code type is taken."""

    async def get_campaign(self, code_type: str) -> Campaign | None: ...

    async def list_campaigns(
        self, where: CampaignFilter, *, skip: int, limit: int
    ) -> list[Campaign]:
        """Campaigns in code-type order."""

    async def count_campaigns(self, where: CampaignFilter) -> int: ...

    async def update_campaign(
        self, code_type: str, version: int, fields: Mapping[str, Any], now: datetime
    ) -> Campaign | None:
        """Set `Campaign` attributes if the campaign is at `version`; None if not."""

    async def find_shared_campaign(self, scan_norm: str) -> Campaign | None:
        """The shared campaign whose campaign-level scan code this is."""
