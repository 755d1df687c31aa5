"""Campaigns: their creation, lookup, listing and versioned updates."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.adapters.documents import campaign_from_doc, campaign_to_doc
from shared.adapters.sqlite.base import SqliteBase
from shared.adapters.sqlite.codec import sql_of
from shared.adapters.sqlite.jsontext import dumps, loads
from shared.adapters.sqlite.schema import CAMPAIGN_COLUMNS, transaction
from shared.domain import model
from shared.domain.model import Campaign, CampaignFilter


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
                    raise model.shared_scan_code_taken(campaign.scan_code) from None
                raise model.code_type_taken(campaign.code_type) from None

        await self._run(insert, writes=True)

    async def find_shared_campaign(self, scan_norm: str) -> Campaign | None:
        row = await self._one("SELECT doc FROM campaigns WHERE scan_norm = ?", scan_norm)
        return campaign_from_doc(loads(row)) if row else None

    async def get_campaign(self, code_type: str) -> Campaign | None:
        row = await self._one("SELECT doc FROM campaigns WHERE code_type = ?", code_type)
        return campaign_from_doc(loads(row)) if row else None

    async def list_campaigns(
        self, where: CampaignFilter, *, skip: int, limit: int
    ) -> list[Campaign]:
        sql, params = sql_of(where.conditions(), CAMPAIGN_COLUMNS)
        rows = await self._all(
            f"SELECT doc FROM campaigns WHERE {sql} ORDER BY code_type LIMIT ? OFFSET ?",
            *params,
            limit,
            skip,
        )
        return [campaign_from_doc(loads(row)) for row in rows]

    async def count_campaigns(self, where: CampaignFilter) -> int:
        sql, params = sql_of(where.conditions(), CAMPAIGN_COLUMNS)
        return int(await self._one(f"SELECT count(*) FROM campaigns WHERE {sql}", *params))

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

        return await self._run(update, writes=True)
