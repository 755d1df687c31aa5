"""The worker's composition root: every adapter comes in as a parameter."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from services.worker.consumer import WorkConsumer
from services.worker.fulfil import Fulfiller
from services.worker.jobs import JobConsumer
from services.worker.redeem import RedeemService
from services.worker.timers import TimerLoop
from services.worker.transports import LocalTransport, Transports
from shared import topology
from shared.clock import Clock, new_id, utcnow
from shared.domain.backoff import RetryPolicy
from shared.domain.codekeys import CodeKeys
from shared.domain.model import NewId
from shared.domain.throttling import DEFAULT_LIMITS, FailureLimits
from shared.ports import Broker, FulfillmentHandler, Store
from shared.service.attempt_outcomes import AttemptOutcomes
from shared.service.campaign_cache import CampaignCache
from shared.service.failure_budget import FailureBudget


@dataclass(frozen=True)
class Consumers:
    """The worker's queues, consumed: redemption jobs and generation jobs."""

    work: WorkConsumer
    jobs: JobConsumer

    async def start(self) -> None:
        await self.work.start()
        await self.jobs.start()

    async def stop(self) -> None:
        await self.jobs.stop()
        await self.work.stop()

    async def check(self) -> None:
        """Raise unless both queues are being consumed: for readiness."""
        await self.work.check()
        await self.jobs.check()


@dataclass(frozen=True)
class Worker:
    redeem: RedeemService
    timers: TimerLoop
    outcomes: AttemptOutcomes
    budget: FailureBudget
    consumers: Consumers | None  # None when bootstrapped without a broker


def bootstrap(
    store: Store,
    handlers: Transports | Mapping[str, FulfillmentHandler],
    *,
    broker: Broker | None = None,
    max_deliveries: int = 5,
    broker_retry: RetryPolicy = topology.BROKER_RETRY,
    campaign_cache_ttl_s: float = 1.0,
    lease_s: float = 10.0,
    timer_scan_s: float = 0.25,
    timer_concurrency: int = 64,
    failure_limits: FailureLimits = DEFAULT_LIMITS,
    uniform_refusals: bool = False,
    code_secret: str | None = None,
    clock: Clock = utcnow,
    ids: NewId = new_id,
    unit: Callable[[], float] = random.random,
) -> Worker:
    """`handlers`: the transports to reach handlers by, or just in-process handlers;
    `code_secret`: keys the codes of campaigns that hash them (`codekeys`).
    With a `broker`, the queue consumers too, which retry after `broker_retry`'s delays
    and give a message up at `max_deliveries`."""
    transports = (
        handlers
        if isinstance(handlers, Transports)
        else Transports(LocalTransport(handlers), None, None)
    )
    keys = CodeKeys(code_secret)
    campaigns = CampaignCache(store, campaign_cache_ttl_s)
    budget = FailureBudget(store, failure_limits, campaigns, clock)
    outcomes = AttemptOutcomes(store, clock, ids, budget, lease_s=lease_s, unit=unit)
    fulfiller = Fulfiller(store, transports, outcomes, clock, lease_s=lease_s)
    redeem = RedeemService(
        store,
        campaigns,
        fulfiller,
        outcomes,
        budget,
        clock,
        ids,
        lease_s=lease_s,
        uniform_refusals=uniform_refusals,
        keys=keys,
    )
    consumers = None
    if broker is not None:
        consumers = _consumers(
            store,
            broker,
            redeem,
            clock,
            ids,
            max_deliveries=max_deliveries,
            retry=broker_retry,
            keys=keys,
        )
    return Worker(
        redeem=redeem,
        timers=TimerLoop(
            store,
            campaigns,
            fulfiller,
            outcomes,
            clock,
            lease_s=lease_s,
            scan_s=timer_scan_s,
            concurrency=timer_concurrency,
            expiring=store,
        ),
        outcomes=outcomes,
        budget=budget,
        consumers=consumers,
    )


def _consumers(
    store: Store,
    broker: Broker,
    redeem: RedeemService,
    clock: Clock,
    ids: NewId,
    *,
    max_deliveries: int,
    retry: RetryPolicy,
    keys: CodeKeys,
) -> Consumers:
    return Consumers(
        work=WorkConsumer(redeem, broker, clock, max_deliveries=max_deliveries, retry=retry),
        jobs=JobConsumer(
            store, broker, clock, ids, max_deliveries=max_deliveries, retry=retry, keys=keys
        ),
    )
