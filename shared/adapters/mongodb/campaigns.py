"""Campaigns: their creation, lookup, listing and versioned updates."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.adapters.documents import camel, campaign_from_doc, campaign_to_doc, stored
from shared.adapters.mongodb.base import MongoBase
from shared.adapters.mongodb.codec import query_of
from shared.domain import model
from shared.domain.model import Campaign, CampaignFilter


class MongoCampaigns(MongoBase):
    """Campaigns, keyed by code type."""

    async def create_campaign(self, campaign: Campaign) -> None:
        try:
            await self._campaigns.insert_one(campaign_to_doc(campaign))
        except DuplicateKeyError as exc:
            if "scanNorm" in str(exc.details):
                raise model.shared_scan_code_taken(campaign.scan_code) from None
            raise model.code_type_taken(campaign.code_type) from None

    async def find_shared_campaign(self, scan_norm: str) -> Campaign | None:
        doc = await self._campaigns.find_one({"scanNorm": scan_norm})
        return campaign_from_doc(doc) if doc else None

    async def get_campaign(self, code_type: str) -> Campaign | None:
        doc = await self._campaigns.find_one({"_id": code_type})
        return campaign_from_doc(doc) if doc else None

    async def list_campaigns(
        self, where: CampaignFilter, *, skip: int, limit: int
    ) -> list[Campaign]:
        cursor = self._campaigns.find(query_of(where.conditions())).sort("_id", ASCENDING)
        return [campaign_from_doc(doc) async for doc in cursor.skip(skip).limit(limit)]

    async def count_campaigns(self, where: CampaignFilter) -> int:
        return await self._campaigns.count_documents(query_of(where.conditions()))

    async def update_campaign(
        self, code_type: str, version: int, fields: Mapping[str, Any], now: datetime
    ) -> Campaign | None:
        changes = {camel(name): _plain(stored(name, value)) for name, value in fields.items()}
        doc = await self._campaigns.find_one_and_update(
            {"_id": code_type, "version": version},
            {"$set": changes | {"updatedAt": now}, "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER,
        )
        return campaign_from_doc(doc) if doc else None


def _plain(value: Any) -> Any:
    """A field value as BSON takes it (policies are dataclasses)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value
