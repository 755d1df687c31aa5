"""The worker's composition root: every adapter comes in as a parameter."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from services.worker.campaigns import CampaignCache
from services.worker.fulfil import Fulfiller
from services.worker.redeem import RedeemService
from services.worker.timers import TimerLoop
from services.worker.transports import LocalTransport, Transports
from shared.clock import Clock, new_id, utcnow
from shared.domain.model import NewId
from shared.fulfillment.outcomes import Outcomes
from shared.ports import FulfillmentHandler, Store


@dataclass(frozen=True)
class Worker:
    redeem: RedeemService
    timers: TimerLoop
    outcomes: Outcomes


def bootstrap(
    store: Store,
    handlers: Transports | Mapping[str, FulfillmentHandler],
    *,
    campaign_cache_ttl_s: float = 1.0,
    lease_s: float = 10.0,
    timer_scan_s: float = 0.25,
    timer_concurrency: int = 64,
    clock: Clock = utcnow,
    ids: NewId = new_id,
    unit: Callable[[], float] = random.random,
) -> Worker:
    """`handlers`: the transports to reach handlers by, or just in-process handlers."""
    transports = (
        handlers
        if isinstance(handlers, Transports)
        else Transports(LocalTransport(handlers), None, None)
    )
    campaigns = CampaignCache(store, campaign_cache_ttl_s)
    outcomes = Outcomes(store, clock, ids, lease_s=lease_s, unit=unit)
    fulfiller = Fulfiller(store, transports, outcomes, clock, lease_s=lease_s)
    return Worker(
        redeem=RedeemService(store, campaigns, fulfiller, outcomes, clock, ids, lease_s=lease_s),
        timers=TimerLoop(
            store,
            campaigns,
            fulfiller,
            outcomes,
            clock,
            lease_s=lease_s,
            scan_s=timer_scan_s,
            concurrency=timer_concurrency,
        ),
        outcomes=outcomes,
    )
