"""Guessing without naming a campaign (`codeType`) escapes none of a campaign's defences:
such a guess is held to the strictest failure limits of every campaign and counted in
the campaign its code is in, told its refusal uniformly when that campaign says so, and
costs the store the same whether or not its code exists. And a code whose fulfillment
failed is someone else's to every user but the one who claimed it."""

from __future__ import annotations

import dataclasses
import inspect
import itertools
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.worker.bootstrap import bootstrap
from services.worker.redeem import RedeemService
from shared.domain import model
from shared.domain.codekeys import CodeKeys
from shared.domain.model import Campaign, Code, CodeUseType, Redemption, RedemptionStatus, new_code
from shared.domain.reasons import ReasonCode
from shared.domain.states import CodeState
from shared.domain.throttling import Caller, FailureLimits, Limit, LockedOut, strictest
from shared.messages import RedemptionRecord
from shared.ports import FulfillmentHandler
from shared.service import campaign_cache
from shared.service.campaign_cache import CampaignCache
from shared.service.failure_budget import FailureBudget
from tests.fakes import FakeStore

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SECRET = "a-secret"
KEYS = CodeKeys(SECRET)
HOUR = timedelta(hours=1)
R = ReasonCode
LOCKED = R.REDEMPTION_CODE_MAX_FAILED_EXCEEDED_FOR_USER
UNIFORM = (int(R.REDEMPTION_CODE_NOT_FOUND), "no such code")
# A guess of each kind: unknown, not active, void, someone else's.
GUESSES = ("NOPE-1", "SLEEPY-1", "VOID-1", "TAKEN-1")


async def _fail(request: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"success": False, "complete": True, "errorCode": "OUT_OF_STOCK", "errorMsg": "none"}


async def _later(request: Mapping[str, Any]) -> Mapping[str, Any]:
    return {"success": True, "complete": False}


HANDLERS: dict[str, FulfillmentHandler] = {"fail": _fail, "later": _later}


def worker(
    store: FakeStore,
    *,
    limits: FailureLimits | None = None,
    uniform: bool = False,
    secret: str | None = None,
    cache_ttl_s: float = 0,
) -> RedeemService:
    counter = itertools.count()
    return bootstrap(
        store,
        HANDLERS,
        campaign_cache_ttl_s=cache_ttl_s,
        failure_limits=limits or FailureLimits(user=None),
        uniform_refusals=uniform,
        code_secret=secret,
        clock=lambda: NOW,
        ids=lambda: f"id-{next(counter)}",
    ).redeem


async def campaign(store: FakeStore, code_type: str, **fields: Any) -> None:
    await store.create_campaign(Campaign(code_type, CodeUseType.SINGLE, NOW, NOW, **fields))


async def code(
    store: FakeStore,
    code_type: str,
    scan: str,
    state: CodeState = CodeState.AVAILABLE,
    *,
    hashed: bool = False,
) -> None:
    created = new_code(
        code_type,
        scan,
        CodeState.INACTIVE if state is CodeState.INACTIVE else CodeState.AVAILABLE,
        None,
        now=NOW,
        new_id=itertools.repeat(f"c-{scan}").__next__,
        keys=KEYS,
        hashed=hashed,
    )
    await store.add_code(dataclasses.replace(created, code_state=state))


def unnamed(user: str, scan: str, rid: str | None = None, **caller: Any) -> Redemption:
    rid = rid or f"r-{user}-{scan}"
    return Redemption(rid, rid, user, scan, NOW, NOW, **caller)


def named(user: str, scan: str, code_type: str, rid: str | None = None) -> Redemption:
    rid = rid or f"r-{user}-{scan}-{code_type}"
    return Redemption(rid, rid, user, scan, NOW, NOW, code_type=code_type)


async def stocked(store: FakeStore, code_type: str, *, hashed: bool = False) -> None:
    """`code_type`'s codes a guess meets: SLEEPY-1 Inactive, VOID-1 invalidated, TAKEN-1
    redeemed by its owner (NOPE-1 is in no campaign)."""
    await code(store, code_type, "SLEEPY-1", CodeState.INACTIVE, hashed=hashed)
    await code(store, code_type, "VOID-1", CodeState.INVALIDATED, hashed=hashed)
    await code(store, code_type, "TAKEN-1", hashed=hashed)
    taken = await worker(store, secret=SECRET).redeem(named("owner", "TAKEN-1", code_type))
    assert taken.status is RedemptionStatus.REDEEMED


def told(redemption: Redemption) -> tuple[int | None, str | None]:
    record = RedemptionRecord.of(redemption)
    return record.reasonCode, record.message


async def entries(store: FakeStore, scope: str) -> list[str]:
    return [e.attempt_id for w in await store.failure_windows([scope]) for e in w.entries]


# Uniform refusals


async def test_naming_no_campaign_is_told_uniformly_when_the_codes_campaign_says_so() -> None:
    store = FakeStore()
    await campaign(store, "hidden", uniform_refusals=True)
    await stocked(store, "hidden")
    redeem = worker(store)  # the global default: off

    ended = [await redeem.redeem(unnamed("mallory", scan)) for scan in GUESSES]

    assert {told(r) for r in ended} == {UNIFORM}
    assert [r.reason_code for r in ended] == [
        R.REDEMPTION_CODE_NOT_FOUND,
        R.REDEMPTION_CODE_NOT_ACTIVE,
        R.REDEMPTION_CODE_INVALID,
        R.REDEMPTION_CODE_REDEEMED_BY_OTHER,
    ]
    stored = await store.get_redemption("r-mallory-SLEEPY-1")
    assert stored is not None and stored.reason_code is R.REDEMPTION_CODE_NOT_ACTIVE


async def test_naming_no_campaign_is_told_the_real_reason_where_nothing_says_uniform() -> None:
    store = FakeStore()
    await campaign(store, "open")
    await stocked(store, "open")

    ended = await worker(store).redeem(unnamed("mallory", "SLEEPY-1"))

    assert told(ended) == (int(R.REDEMPTION_CODE_NOT_ACTIVE), "code is Inactive")


async def test_a_campaign_that_turns_uniform_refusals_off_keeps_that_when_it_is_named() -> None:
    store = FakeStore()
    await campaign(store, "open", uniform_refusals=False)
    await campaign(store, "default")
    await stocked(store, "open")
    await code(store, "default", "SLEEPY-2", CodeState.INACTIVE)
    redeem = worker(store, uniform=True)

    open_named = await redeem.redeem(named("mallory", "SLEEPY-1", "open"))
    open_unnamed = await redeem.redeem(unnamed("mallory", "SLEEPY-1"))
    default_named = await redeem.redeem(named("mallory", "SLEEPY-2", "default"))

    assert told(open_named) == (int(R.REDEMPTION_CODE_NOT_ACTIVE), "code is Inactive")
    assert told(open_unnamed) == UNIFORM  # the global default says so
    assert told(default_named) == UNIFORM


# Failure limits


def test_the_strictest_limits_are_the_fewest_failures_over_the_longest_window() -> None:
    service = FailureLimits(user=Limit(10, timedelta(minutes=15)))
    vip = FailureLimits(user=Limit(3, timedelta(minutes=1)), key=Limit(100, HOUR))
    shop = FailureLimits(user=None, address=Limit(50, timedelta(minutes=1)))

    combined = strictest(service, vip, shop)

    assert combined == FailureLimits(
        user=Limit(3, timedelta(minutes=15)),
        key=Limit(100, HOUR),
        address=Limit(50, timedelta(minutes=1)),
        campaign=None,
    )
    assert strictest(service) == service
    assert strictest(FailureLimits(user=None), FailureLimits(user=None)).user is None


async def test_the_cache_gives_every_campaigns_strictest_limits_for_its_time_to_live(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(campaign_cache, "LISTING_PAGE", 2)  # several pages
    store = FakeStore()
    await campaign(store, "a", failure_limits="user=3/1m")
    await campaign(store, "b", failure_limits="key=5/1h")
    await campaign(store, "c")
    await campaign(store, "d", failure_limits="user=off")
    clock = [0.0]
    cache = CampaignCache(store, ttl_s=10, monotonic=lambda: clock[0])
    service = FailureLimits()  # user=10/15m

    first = await cache.strictest_limits(service)
    await campaign(store, "e", failure_limits="address=1/1h")
    clock[0] = 9.9
    cached = await cache.strictest_limits(service)
    clock[0] = 10.0
    later = await cache.strictest_limits(service)

    expected = FailureLimits(user=Limit(3, timedelta(minutes=15)), key=Limit(5, HOUR))
    assert first == cached == expected
    assert later == dataclasses.replace(expected, address=Limit(1, HOUR))


async def test_naming_no_campaign_is_held_to_the_strictest_user_limit_of_any_campaign() -> None:
    store = FakeStore()
    await campaign(store, "gems")
    await campaign(store, "vip", failure_limits="user=1/1h")
    redeem = worker(store, limits=FailureLimits())  # user=10/15m

    guesses = [(await redeem.redeem(unnamed("mallory", f"NOPE-{n}"))).reason_code for n in (1, 2)]

    assert guesses == [R.REDEMPTION_CODE_NOT_FOUND, LOCKED]
    assert await entries(store, "user:mallory") == ["r-mallory-NOPE-1"]


async def test_naming_no_campaign_is_held_to_the_strictest_key_and_address_limits() -> None:
    store = FakeStore()
    await campaign(store, "gems")
    await campaign(store, "vip", failure_limits="key=2/1h,address=2/1h")
    redeem = worker(store)

    async def guess(user: str, key: str, address: str) -> ReasonCode | None:
        attempt = unnamed(user, "NOPE-1", key_id=key, client_address=address)
        return (await redeem.redeem(attempt)).reason_code

    assert await guess("u1", "k1", "10.0.0.1") is R.REDEMPTION_CODE_NOT_FOUND
    assert await guess("u2", "k1", "10.0.0.2") is R.REDEMPTION_CODE_NOT_FOUND
    assert await guess("u3", "k1", "10.0.0.3") is LOCKED  # key k1 used up
    assert await guess("u4", "k2", "10.0.0.1") is R.REDEMPTION_CODE_NOT_FOUND
    assert await guess("u5", "k3", "10.0.0.1") is LOCKED  # address 10.0.0.1 used up


async def test_the_intake_checks_a_caller_naming_no_campaign_against_the_strictest_limits() -> None:
    store = FakeStore()
    await campaign(store, "gems")
    await campaign(store, "vip", failure_limits="user=1/1h")
    budget = FailureBudget(store, FailureLimits(user=None), CampaignCache(store, 0), lambda: NOW)
    await budget.reserve("a-1", Caller("mallory"))  # a guess, kept

    with pytest.raises(LockedOut):
        await budget.check(Caller("mallory"))
    await budget.check(Caller("mallory", code_type="gems"))  # gems counts no user


async def test_a_guess_naming_no_campaign_counts_in_the_campaign_its_code_is_in() -> None:
    store = FakeStore()
    await campaign(store, "vip", failure_limits="campaign=2/1h")
    for n in (1, 2, 3):
        await code(store, "vip", f"SLEEPY-{n}", CodeState.INACTIVE)
    redeem = worker(store)

    first = [(await redeem.redeem(unnamed(f"u{n}", f"SLEEPY-{n}"))).reason_code for n in (1, 2)]
    locked = await redeem.redeem(named("u3", "SLEEPY-3", "vip"))
    after = await redeem.redeem(unnamed("u4", "SLEEPY-3"))

    assert first == [R.REDEMPTION_CODE_NOT_ACTIVE] * 2
    assert await entries(store, "campaign:vip") == ["r-u1-SLEEPY-1", "r-u2-SLEEPY-2"]
    assert locked.reason_code is LOCKED
    # Counting only: a guess that named no campaign was looked at before its campaign
    # was known, and is answered as it was looked at.
    assert after.reason_code is R.REDEMPTION_CODE_NOT_ACTIVE


async def test_only_a_guess_whose_campaign_was_found_counts_in_a_campaign() -> None:
    store = FakeStore()
    await campaign(store, "vip", failure_limits="campaign=5/1h")
    await code(store, "vip", "GOOD-1")
    redeem = worker(store)

    redeemed = await redeem.redeem(unnamed("u1", "GOOD-1", "r-1"))
    again = await redeem.redeem(unnamed("u1", "GOOD-1", "r-2"))
    unknown = await redeem.redeem(unnamed("u2", "NOPE-1", "r-3"))

    assert redeemed.status is RedemptionStatus.REDEEMED
    assert again.reason_code is R.REDEMPTION_CODE_REDEEMED_BY_SELF  # no guess
    assert unknown.reason_code is R.REDEMPTION_CODE_NOT_FOUND  # in no campaign
    assert await entries(store, "campaign:vip") == []


# The work a refusal costs


class CountingStore(FakeStore):
    """The fake store, noting each call made of it, by method."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def __getattribute__(self, name: str) -> Any:
        found = super().__getattribute__(name)
        if name.startswith("_") or not inspect.iscoroutinefunction(found):
            return found
        calls: list[str] = super().__getattribute__("calls")
        method: Callable[..., Any] = found

        async def counted(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return await method(*args, **kwargs)

        return counted


@pytest.mark.parametrize(
    ("hashed", "uniform_by"),
    [(False, "service"), (True, "service"), (False, "campaign"), (True, "campaign")],
    ids=["plain", "hashed", "plain-campaign-uniform", "hashed-campaign-uniform"],
)
async def test_an_unknown_code_costs_the_store_what_refusing_a_known_one_does(
    hashed: bool, uniform_by: str
) -> None:
    store = CountingStore()
    await campaign(store, "gems", hash_codes=hashed, uniform_refusals=uniform_by == "campaign")
    await stocked(store, "gems", hashed=hashed)
    redeem = worker(store, uniform=uniform_by == "service", secret=SECRET, cache_ttl_s=3600)
    for scan in GUESSES:  # campaigns read into the cache, as on a running worker
        await redeem.redeem(unnamed("warm", scan))

    costs = {}
    for scan in GUESSES:
        store.calls.clear()
        ended = await redeem.redeem(unnamed("mallory", scan))
        assert told(ended) == UNIFORM
        costs[scan] = list(store.calls)

    assert costs["NOPE-1"] == costs["SLEEPY-1"] == costs["VOID-1"] == costs["TAKEN-1"]
    assert not {"key_redemption", "apply", "get_code"} & set(costs["SLEEPY-1"])


async def test_a_code_found_without_its_campaign_gets_the_campaigns_refusal_first() -> None:
    store = FakeStore()
    await campaign(store, "off", is_disabled=True)
    await code(store, "off", "SLEEPY-1", CodeState.INACTIVE)

    ended = await worker(store).redeem(unnamed("mallory", "SLEEPY-1"))

    assert ended.reason_code is R.REDEMPTION_CODE_TYPE_DISABLED  # as when named


async def test_a_redelivered_job_naming_no_campaign_resumes_the_code_it_holds() -> None:
    store = FakeStore()
    await campaign(store, "slow", handler="later", is_async=True)
    await code(store, "slow", "SLOW-1")
    redeem = worker(store, secret=SECRET)
    first = await redeem.redeem(unnamed("alice", "SLOW-1", "r-1"))
    assert first.status is RedemptionStatus.IN_PROGRESS

    again = await redeem.redeem(unnamed("alice", "SLOW-1", "r-1"))

    assert (again.status, again.reason_code) == (RedemptionStatus.IN_PROGRESS, None)


# A code whose fulfillment failed


def test_a_failed_code_is_someone_elses_to_all_but_the_user_who_claimed_it() -> None:
    failed = Code(
        "c",
        "gems",
        "ABC",
        CodeState.FAILED,
        NOW,
        NOW,
        redeemed_by_user_id="owner",
        redemption_id="r-owner",
    )
    retrying = dataclasses.replace(failed, retry_at=NOW)
    void = dataclasses.replace(failed, code_state=CodeState.INVALIDATED)

    def reason(code: Code, user: str) -> ReasonCode:
        return model.refusal(code, user).reason

    assert reason(failed, "owner") is R.REDEMPTION_FAILED_MAX_RETRIES
    assert reason(failed, "mallory") is R.REDEMPTION_CODE_REDEEMED_BY_OTHER
    assert reason(retrying, "owner") is R.REDEMPTION_IN_PROGRESS
    assert reason(retrying, "mallory") is R.REDEMPTION_CODE_REDEEMED_BY_OTHER
    assert reason(void, "owner") is reason(void, "mallory") is R.REDEMPTION_CODE_INVALID


async def test_another_users_redemption_of_a_failed_code_is_refused_as_a_guess() -> None:
    store = FakeStore()
    await campaign(store, "flaky", handler="fail", uniform_refusals=True)
    await code(store, "flaky", "FLAKY-1")
    redeem = worker(store, limits=FailureLimits(user=Limit(3, HOUR)))
    owned = await redeem.redeem(named("owner", "FLAKY-1", "flaky", "r-owner"))
    assert (owned.status, owned.reason_code) == (RedemptionStatus.FAILED, R.REDEMPTION_FAILED)

    by_name = await redeem.redeem(named("mallory", "FLAKY-1", "flaky"))
    by_code = await redeem.redeem(unnamed("mallory", "FLAKY-1"))
    owner_again = await redeem.redeem(named("owner", "FLAKY-1", "flaky", "r-owner-2"))

    for guess in (by_name, by_code):
        assert told(guess) == UNIFORM
        assert guess.reason_code is R.REDEMPTION_CODE_REDEEMED_BY_OTHER  # kept for operators
    assert await entries(store, "user:mallory") == [by_name.redemption_id, by_code.redemption_id]
    assert owner_again.reason_code is R.REDEMPTION_FAILED_MAX_RETRIES
    assert told(owner_again)[0] == int(R.REDEMPTION_FAILED_MAX_RETRIES)
    assert await entries(store, "user:owner") == []  # no guess: given back
