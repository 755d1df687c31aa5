"""A redemption that names no campaign, in a service that can hash codes, is recorded
the same way whether or not a code exists (masked, under the code's hashed key), and
nothing is looked up before its failure budget is reserved; the worker still finds
the code from what was typed, in a campaign that hashes codes or one that does not."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.worker.bootstrap import Worker, bootstrap
from shared.domain.access import UNLIMITED
from shared.domain.codekeys import CodeKeys, masked
from shared.domain.fulfillment import AsyncResponse
from shared.domain.model import Campaign, CodeUseType, Redemption, RedemptionStatus, new_code
from shared.domain.states import CodeState
from shared.domain.throttling import FailureLimits, Limit
from shared.ports import FulfillmentHandler
from tests.fakes import FakeStore

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SECRET = "a-secret"
KEYS = CodeKeys(SECRET)
HASHED_CODE, PLAIN_CODE, UNKNOWN = "VAULT-7K2P-9QXA", "GEMS-7K2P-9QXB", "NONE-7K2P-9QXC"


async def _wait(request: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"success": True, "complete": False}


HANDLERS: dict[str, FulfillmentHandler] = {"wait": _wait}


def worker(store: FakeStore, *, user_limit: int = 10) -> Worker:
    counter = itertools.count()
    return bootstrap(
        store,
        HANDLERS,
        campaign_cache_ttl_s=0,
        failure_limits=FailureLimits(user=Limit(user_limit, timedelta(minutes=15))),
        uniform_refusals=True,
        code_secret=SECRET,
        clock=lambda: NOW,
        ids=lambda: f"id-{next(counter)}",
    )


async def stocked(**plain_campaign: Any) -> FakeStore:
    """A campaign `vault` that hashes codes, one `gems` that does not, a code in each."""
    store = FakeStore()
    for code_type, hashed, scan in (("vault", True, HASHED_CODE), ("gems", False, PLAIN_CODE)):
        fields = {} if hashed else plain_campaign
        campaign = Campaign(code_type, CodeUseType.SINGLE, NOW, NOW, hash_codes=hashed, **fields)
        await store.create_campaign(campaign)
        await store.add_code(
            new_code(
                code_type,
                scan,
                CodeState.AVAILABLE,
                None,
                now=NOW,
                new_id=itertools.repeat(f"c-{code_type}").__next__,
                keys=KEYS,
                hashed=hashed,
            )
        )
    return store


def request(user: str, scan: str, rid: str) -> Redemption:
    return Redemption(rid, rid, user, scan, NOW, NOW)  # no codeType


def as_recorded(redemption: Redemption) -> dict[str, Any]:
    """A refused redemption's record as a caller is shown it (the refusal as told), but
    for its id and its code's last four characters, which it typed itself."""
    shown = dataclasses.asdict(redemption) | {"told": redemption.reason_as_told}
    for name in ("redemption_id", "request_id", "code_key", "reason_code", "message"):
        shown.pop(name)
    shown["scan_code"] = shown["scan_code"][:-4]
    return shown


@pytest.mark.parametrize("locked_out", [False, True], ids=["counted", "locked-out"])
async def test_a_guess_naming_no_campaign_is_recorded_alike_whether_or_not_a_code_exists(
    locked_out: bool,
) -> None:
    store = await stocked()
    first = await worker(store).redeem.redeem(request("alice", HASHED_CODE, "r-alice"))
    assert first.status is RedemptionStatus.REDEEMED
    redeem = worker(store, user_limit=1 if locked_out else 10).redeem
    if locked_out:  # a guess that used mallory's window up
        await redeem.redeem(request("mallory", "NONE-0000-0000", "r-0"))

    someone_elses = await redeem.redeem(request("mallory", HASHED_CODE, "r-1"))
    unknown = await redeem.redeem(request("mallory", UNKNOWN, "r-2"))

    assert someone_elses.scan_code == masked(HASHED_CODE)
    assert unknown.scan_code == masked(UNKNOWN)
    assert as_recorded(someone_elses) == as_recorded(unknown)
    for rid, typed in (("r-1", HASHED_CODE), ("r-2", UNKNOWN)):
        stored = await store.get_redemption(rid)
        assert stored is not None and stored.scan_code == masked(typed)
        assert stored.code_key == KEYS.key(typed, hashed=True)


async def test_a_code_of_either_kind_is_redeemed_by_what_was_typed_without_its_campaign() -> None:
    store = await stocked()
    redeem = worker(store).redeem
    hashed = await redeem.redeem(request("bob", HASHED_CODE.lower(), "r-1"))
    plain = await redeem.redeem(request("carol", PLAIN_CODE.lower(), "r-2"))
    assert (hashed.status, hashed.code_type) == (RedemptionStatus.REDEEMED, "vault")
    assert (plain.status, plain.code_type) == (RedemptionStatus.REDEEMED, "gems")
    assert plain.scan_code == masked(PLAIN_CODE)  # recorded as any redemption naming none


async def test_a_plain_code_redeemed_naming_no_campaign_takes_an_async_answer() -> None:
    """The record is keyed as the code it found before it holds it, so a partner's answer
    (and a give-up) finds the code by the record."""
    store = await stocked(handler="wait", is_async=True)
    running = worker(store)
    pending = await running.redeem.redeem(request("carol", PLAIN_CODE, "r-1"))
    assert pending.status is RedemptionStatus.IN_PROGRESS
    answer = AsyncResponse("r-1", pending.attempt, {"success": True}, redemption_code_id="c-gems")
    code = await running.outcomes.respond(answer, UNLIMITED)
    assert code.code_state is CodeState.REDEEMED
    stored = await store.get_redemption("r-1")
    assert stored is not None and stored.status is RedemptionStatus.REDEEMED
