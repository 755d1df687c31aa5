"""Campaigns: their creation, lookup, listing and versioned updates."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.adapters.documents import campaign_from_doc, campaign_to_doc
from shared.adapters.sqlite.base import SqliteBase
from shared.adapters.sqlite.codec import dumps, loads
from shared.adapters.sqlite.schema import transaction
from shared.domain.model import Campaign, CampaignFilter
from shared.domain.reasons import DomainError, ReasonCode


class Campaigns(SqliteBase):
    """Campaigns, keyed by code type; a shared campaign's scan code is unique."""

    async def create_campaign(self, campaign: Campaign) -> None:
        doc = campaign_to_doc(campaign)

        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    "INSERT INTO campaigns (code_type, scan_norm, doc) VALUES (?, ?, ?)",
                    (campaign.code_type, doc.get("scanNorm"), dumps(doc)),
                )
            except sqlite3.IntegrityError as exc:
                if "scan_norm" in str(exc):
                    raise DomainError(
                        ReasonCode.SCAN_CODE_EXISTS,
                        f"another shared campaign has scan code {campaign.scan_code}",
                    ) from None
                raise DomainError(
                    ReasonCode.CODE_TYPE_EXISTS, f"campaign {campaign.code_type} exists"
                ) from None

        await self._run(insert)

    async def find_shared_campaign(self, scan_norm: str) -> Campaign | None:
        row = await self._one("SELECT doc FROM campaigns WHERE scan_norm = ?", scan_norm)
        return campaign_from_doc(loads(row)) if row else None

    async def get_campaign(self, code_type: str) -> Campaign | None:
        row = await self._one("SELECT doc FROM campaigns WHERE code_type = ?", code_type)
        return campaign_from_doc(loads(row)) if row else None

    async def list_campaigns(
        self, where: CampaignFilter, *, skip: int, limit: int
    ) -> list[Campaign]:
        return (await self._campaigns_where(where))[skip : skip + limit]

    async def count_campaigns(self, where: CampaignFilter) -> int:
        return len(await self._campaigns_where(where))

    async def _campaigns_where(self, where: CampaignFilter) -> list[Campaign]:
        # Campaigns number in the thousands at most: filter them here, with the
        # domain's own definition, rather than mirror every field in columns.
        rows = await self._all("SELECT doc FROM campaigns ORDER BY code_type")
        return [c for c in (campaign_from_doc(loads(r)) for r in rows) if where.matches(c)]

    async def update_campaign(
        self, code_type: str, version: int, fields: Mapping[str, Any], now: datetime
    ) -> Campaign | None:
        def update(conn: sqlite3.Connection) -> Campaign | None:
            with transaction(conn):
                row = conn.execute(
                    "SELECT doc FROM campaigns WHERE code_type = ?", (code_type,)
                ).fetchone()
                campaign = campaign_from_doc(loads(row[0])) if row else None
                if campaign is None or campaign.version != version:
                    return None
                changed = dataclasses.replace(
                    campaign, **fields, version=version + 1, updated_at=now
                )
                conn.execute(
                    "UPDATE campaigns SET doc = ? WHERE code_type = ?",
                    (dumps(campaign_to_doc(changed)), code_type),
                )
                return changed

        return await self._run(update)
