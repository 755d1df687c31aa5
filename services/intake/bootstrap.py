"""The intake's composition root: every adapter comes in as a parameter."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from services.intake.admin import Admin
from services.intake.braincloud.client import ClientDoor
from services.intake.braincloud.servers import ServerDoor
from services.intake.bulk import Bulk
from services.intake.commands import CommandConsumer
from services.intake.generation import Generation
from services.intake.paging import Contexts
from services.intake.queries import Queries
from services.intake.redemptions import Redeemer
from services.intake.replies import Replies
from shared import topology
from shared.adapters.rabbitmq import Broker
from shared.clock import Clock, new_id, utcnow
from shared.domain.backoff import RetryPolicy
from shared.domain.codekeys import CodeKeys
from shared.domain.model import NewId
from shared.domain.profiles import Apps, Servers
from shared.domain.redemptions import RedemptionIds
from shared.ports import Store
from shared.runtime.settings import Settings
from shared.service.attempt_outcomes import AttemptOutcomes
from shared.service.campaign_cache import CampaignCache
from shared.service.failure_budget import FailureBudget


@dataclass(frozen=True)
class Intake:
    """The intake's service layer, as its routes and its command consumer use it."""

    admin: Admin
    bulk: Bulk
    generation: Generation
    queries: Queries
    redeemer: Redeemer
    attempts: AttemptOutcomes
    budget: FailureBudget
    contexts: Contexts
    replies: Replies
    commands: CommandConsumer
    client_door: ClientDoor
    server_door: ServerDoor


def bootstrap(
    store: Store,
    broker: Broker,
    settings: Settings,
    *,
    clock: Clock = utcnow,
    ids: NewId = new_id,
    broker_retry: RetryPolicy = topology.BROKER_RETRY,
) -> Intake:
    """Builds, starts nothing: `replies` and `commands` are started by the caller. The
    command consumer retries after `broker_retry`'s delays, up to `max_deliveries`.
    `settings.redemption_id_secret` must be set (`startup.with_redemption_id_secret`)."""
    if not settings.redemption_id_secret:
        raise ValueError("the intake needs a redemption id secret (REDEEM_REDEMPTION_ID_SECRET)")
    redemption_ids = RedemptionIds(settings.redemption_id_secret)
    keys = CodeKeys(settings.code_secret)
    campaigns = CampaignCache(store, settings.campaign_cache_ttl_s)
    budget = FailureBudget(store, settings.failure_limits_parsed(), campaigns, clock)
    attempts = AttemptOutcomes(store, clock, ids, budget, lease_s=settings.fulfillment_lease_s)
    replies = Replies(broker)
    queries = Queries(store)
    admin = Admin(store, clock, ids, keys)
    generation = Generation(
        store, broker, clock, ids, keys, codes_ttl_s=settings.generated_codes_ttl_s
    )
    contexts = Contexts(settings.context_secret or secrets.token_hex(32))
    redeemer = Redeemer(
        broker, store, budget, replies, clock, redemption_ids, max_wait_s=settings.max_wait_s
    )
    return Intake(
        admin=admin,
        bulk=Bulk(store, clock, ids, keys),
        generation=generation,
        queries=queries,
        redeemer=redeemer,
        budget=budget,
        attempts=attempts,
        contexts=contexts,
        replies=replies,
        commands=CommandConsumer(
            broker,
            attempts,
            budget,
            clock,
            settings.api_keys_parsed(),
            redemption_ids,
            max_deliveries=settings.max_deliveries,
            retry=broker_retry,
        ),
        client_door=ClientDoor(
            Apps.parse(settings.braincloud_apps),
            store,
            redeemer,
            queries,
            clock,
            session_expiry_s=settings.braincloud_session_expiry_s,
            wait_s=settings.braincloud_wait_s,
            max_kill_count=settings.braincloud_max_kill_count,
        ),
        server_door=ServerDoor(
            Servers.parse(settings.braincloud_servers),
            Apps.parse(settings.braincloud_apps),
            store,
            admin,
            generation,
            queries,
            redeemer,
            attempts,
            contexts,
            clock,
            session_expiry_s=settings.braincloud_session_expiry_s,
            wait_s=settings.braincloud_wait_s,
        ),
    )
