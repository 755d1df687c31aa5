"""Campaigns: their creation, lookup, listing and versioned updates."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from shared.adapters.documents import Doc, camel, campaign_from_doc, campaign_to_doc, stored
from shared.adapters.mongodb.base import MongoBase
from shared.domain.model import Campaign, CampaignFilter
from shared.domain.reasons import DomainError, ReasonCode


class MongoCampaigns(MongoBase):
    """Campaigns, keyed by code type."""

    async def create_campaign(self, campaign: Campaign) -> None:
        try:
            await self._campaigns.insert_one(campaign_to_doc(campaign))
        except DuplicateKeyError as exc:
            if "scanNorm" in str(exc.details):
                raise DomainError(
                    ReasonCode.SCAN_CODE_EXISTS,
                    f"another shared campaign has scan code {campaign.scan_code}",
                ) from None
            raise DomainError(
                ReasonCode.CODE_TYPE_EXISTS, f"campaign {campaign.code_type} exists"
            ) from None

    async def find_shared_campaign(self, scan_norm: str) -> Campaign | None:
        doc = await self._campaigns.find_one({"scanNorm": scan_norm})
        return campaign_from_doc(doc) if doc else None

    async def get_campaign(self, code_type: str) -> Campaign | None:
        doc = await self._campaigns.find_one({"_id": code_type})
        return campaign_from_doc(doc) if doc else None

    async def list_campaigns(
        self, where: CampaignFilter, *, skip: int, limit: int
    ) -> list[Campaign]:
        cursor = self._campaigns.find(_campaign_query(where)).sort("_id", ASCENDING)
        return [campaign_from_doc(doc) async for doc in cursor.skip(skip).limit(limit)]

    async def count_campaigns(self, where: CampaignFilter) -> int:
        return await self._campaigns.count_documents(_campaign_query(where))

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


def _campaign_query(where: CampaignFilter) -> Doc:
    query: Doc = {}
    if where.code_use_type is not None:
        query["codeUseType"] = where.code_use_type.value
    if where.is_disabled is not None:
        query["isDisabled"] = where.is_disabled
    if where.valid_at is not None:
        query["$and"] = [
            {"$or": [{"validStart": None}, {"validStart": {"$lte": where.valid_at}}]},
            {"$or": [{"validEnd": None}, {"validEnd": {"$gt": where.valid_at}}]},
        ]
    return query
