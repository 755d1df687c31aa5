"""The worker's composition root: every adapter comes in as a parameter."""

from __future__ import annotations

from collections.abc import Mapping

from services.worker.campaigns import CampaignCache
from services.worker.redeem import RedeemService
from shared.clock import Clock, new_id, utcnow
from shared.domain.model import NewId
from shared.ports import FulfillmentHandler, Store


def bootstrap(
    store: Store,
    handlers: Mapping[str, FulfillmentHandler],
    *,
    campaign_cache_ttl_s: float = 1.0,
    clock: Clock = utcnow,
    ids: NewId = new_id,
) -> RedeemService:
    campaigns = CampaignCache(store, campaign_cache_ttl_s)
    return RedeemService(store, campaigns, handlers, clock, ids)
