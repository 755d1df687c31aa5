"""Throttling failed redemptions: the windows' rule, and the worker counting guesses."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

import pytest

from services.worker.bootstrap import bootstrap
from services.worker.redeem import RedeemService
from shared.domain.model import (
    Campaign,
    Code,
    CodeRef,
    CodeUseType,
    Redemption,
    RedemptionStatus,
)
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState
from shared.domain.throttling import (
    DEFAULT_USER_LIMIT,
    FailureLimits,
    FailureWindow,
    Limit,
    LockedOut,
    ScopeKind,
    kind_of,
    lockouts,
    parse_limits,
)
from shared.messages import RedemptionRecord
from tests.fakes import FakeStore

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
THREE = Limit(3, timedelta(minutes=10))
LOCKED = ReasonCode.REDEMPTION_CODE_MAX_FAILED_EXCEEDED_FOR_USER


def test_limits_parse_from_their_setting_and_keep_defaults_for_scopes_not_named() -> None:
    limits = FailureLimits.parse("key=1000/1h, address=50/90s, user=off")
    assert limits.user is None
    assert limits.key == Limit(1000, timedelta(hours=1))
    assert limits.address == Limit(50, timedelta(seconds=90))
    assert limits.campaign is None
    assert FailureLimits.parse("").user == DEFAULT_USER_LIMIT == Limit(10, timedelta(minutes=15))


@pytest.mark.parametrize("spec", ["nobody=1/1m", "user=10", "user=0/1m", "user=1/0s", "user=x"])
def test_a_limit_that_cannot_work_is_refused_at_start(spec: str) -> None:
    with pytest.raises(ValueError, match=r"user|nobody"):
        parse_limits(spec)


def test_a_window_admits_up_to_its_limit_and_slides() -> None:
    window = FailureWindow("user:u", THREE)
    for n in range(5):
        window = window.admit(f"a{n}", NOW + timedelta(minutes=n), THREE)
    assert [e.attempt_id for e in window.entries] == ["a0", "a1", "a2"]
    assert window.retry_after(NOW + timedelta(minutes=4)) == timedelta(minutes=6)
    # Ten minutes after the first, it has left the window: room for one more.
    later = window.admit("a5", NOW + timedelta(minutes=10), THREE)
    assert [e.attempt_id for e in later.entries] == ["a1", "a2", "a5"]
    assert later.retry_after(NOW + timedelta(minutes=10)) == timedelta(minutes=1)


def test_an_attempt_admitted_once_is_admitted_again_without_a_second_entry() -> None:
    window = FailureWindow("user:u", THREE).admit("a", NOW, THREE).admit("a", NOW, THREE)
    assert len(window.entries) == 1 and window.holds("a")
    assert not window.without("a").entries


def test_lockouts_are_the_windows_with_no_room_left() -> None:
    full = FailureWindow("user:u", THREE)
    for n in range(3):
        full = full.admit(f"a{n}", NOW, THREE)
    roomy = FailureWindow("key:k", THREE).admit("b", NOW, THREE)
    [locked] = lockouts([full, roomy], NOW + timedelta(minutes=1))
    assert (locked.scope, locked.failures, locked.retry_after) == (
        "user:u",
        3,
        timedelta(minutes=9),
    )


def test_a_lockout_says_when_to_come_back_in_whole_seconds() -> None:
    locked = LockedOut(timedelta(seconds=4.2))
    assert (locked.reason, locked.retry_after_s) == (LOCKED, 5)


def test_a_scope_names_its_kind() -> None:
    assert kind_of("address:10.0.0.1") is ScopeKind.ADDRESS
    for bad in ("user:", "who:u1", "u1"):
        with pytest.raises(DomainError):
            kind_of(bad)


def worker(store: FakeStore, limits: FailureLimits) -> RedeemService:
    counter = itertools.count()
    return bootstrap(
        store,
        {},
        campaign_cache_ttl_s=0,
        failure_limits=limits,
        clock=lambda: NOW,
        ids=lambda: f"id-{next(counter)}",
    ).redeem


async def seeded(codes: int) -> FakeStore:
    store = FakeStore()
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    for n in range(codes):
        await store.add_code(Code(f"c{n}", "gems", f"GOOD{n}", CodeState.AVAILABLE, NOW, NOW))
    return store


def attempt(rid: str, scan: str, user: str = "u1", key: str | None = None) -> Redemption:
    return Redemption(rid, rid, user, scan, NOW, NOW, code_type="gems", key_id=key)


async def test_guesses_beyond_the_limit_are_refused_without_looking_at_the_code() -> None:
    store = await seeded(1)
    redeem = worker(store, FailureLimits(user=THREE))
    for n in range(3):
        assert (await redeem.redeem(attempt(f"g{n}", f"BAD{n}"))).reason_code is (
            ReasonCode.REDEMPTION_CODE_NOT_FOUND
        )

    refused = await redeem.redeem(attempt("good", "GOOD0"))

    assert (refused.status, refused.reason_code) == (RedemptionStatus.REJECTED, LOCKED)
    untouched = await store.get_code(CodeRef("gems", "GOOD0"))
    assert untouched is not None and untouched.code_state is CodeState.AVAILABLE
    other_user = await redeem.redeem(attempt("other", "GOOD0", user="u2"))
    assert other_user.status is RedemptionStatus.REDEEMED


async def test_concurrent_guesses_reach_codes_no_more_often_than_the_limit() -> None:
    store = await seeded(0)
    redeem = worker(store, FailureLimits(user=THREE))

    ended = await asyncio.gather(*(redeem.redeem(attempt(f"g{n}", f"BAD{n}")) for n in range(20)))

    reasons = [r.reason_code for r in ended]
    assert reasons.count(ReasonCode.REDEMPTION_CODE_NOT_FOUND) == 3
    assert reasons.count(LOCKED) == 17


async def test_a_success_clears_the_users_count_and_refusals_that_are_no_guess_give_back() -> None:
    store = await seeded(2)
    redeem = worker(store, FailureLimits(user=THREE))
    await redeem.redeem(attempt("g1", "BAD1"))
    await redeem.redeem(attempt("g2", "BAD2"))

    assert (await redeem.redeem(attempt("ok", "GOOD0"))).status is RedemptionStatus.REDEEMED
    assert await store.failure_windows(["user:u1"]) == []

    # Redeeming one's own code again is no guess: its entry is given back.
    again = await redeem.redeem(attempt("again", "GOOD0"))
    assert again.reason_code is ReasonCode.REDEMPTION_CODE_REDEEMED_BY_SELF
    assert await store.failure_windows(["user:u1"]) == []


class CountingClears(FakeStore):
    """A store that counts the windows cleared: a write each on MongoDB."""

    def __init__(self) -> None:
        super().__init__()
        self.clears = 0

    async def clear_failure_window(self, scope: str) -> bool:
        self.clears += 1
        return await super().clear_failure_window(scope)


async def test_where_users_are_not_counted_a_success_writes_no_window() -> None:
    store = CountingClears()
    for n in range(2):
        await store.add_code(Code(f"c{n}", "gems", f"GOOD{n}", CodeState.AVAILABLE, NOW, NOW))
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))

    counted = await worker(store, FailureLimits(user=THREE)).redeem(attempt("a", "GOOD0"))
    assert (counted.status, store.clears) == (RedemptionStatus.REDEEMED, 1)
    uncounted = await worker(store, FailureLimits(user=None)).redeem(attempt("b", "GOOD1"))
    assert (uncounted.status, store.clears) == (RedemptionStatus.REDEEMED, 1)


async def test_successes_in_a_campaign_that_counts_no_users_clear_the_users_window() -> None:
    store = await seeded(0)
    await store.create_campaign(
        Campaign("free", CodeUseType.SINGLE, NOW, NOW, failure_limits="user=off")
    )
    for n in range(5):
        await store.add_code(Code(f"f{n}", "free", f"FREE{n}", CodeState.AVAILABLE, NOW, NOW))
    redeem = worker(store, FailureLimits(user=THREE))
    await redeem.redeem(attempt("g1", "BAD1"))
    await redeem.redeem(attempt("g2", "BAD2"))

    named = Redemption("n0", "n0", "u1", "FREE0", NOW, NOW, code_type="free")
    assert (await redeem.redeem(named)).status is RedemptionStatus.REDEEMED
    assert await store.failure_windows(["user:u1"]) == []

    # Naming no campaign, the user is held to the strictest limits (users counted) while
    # the code is looked for: each success gives its place back, none locks the user out.
    for n in range(1, 5):
        unnamed = Redemption(f"u{n}", f"u{n}", "u1", f"FREE{n}", NOW, NOW)
        assert (await redeem.redeem(unnamed)).status is RedemptionStatus.REDEEMED
    assert await store.failure_windows(["user:u1"]) == []


async def test_a_key_limit_counts_every_user_of_the_key() -> None:
    store = await seeded(1)
    redeem = worker(store, FailureLimits(user=None, key=THREE))
    for n in range(3):
        await redeem.redeem(attempt(f"g{n}", f"BAD{n}", user=f"u{n}", key="k1"))

    refused = await redeem.redeem(attempt("late", "GOOD0", user="fresh", key="k1"))
    other_key = await redeem.redeem(attempt("ok", "GOOD0", user="fresh", key="k2"))

    assert refused.reason_code is LOCKED
    assert other_key.status is RedemptionStatus.REDEEMED


async def test_a_redelivered_job_is_not_locked_out_of_what_it_started() -> None:
    store = await seeded(1)
    redeem = worker(store, FailureLimits(user=THREE))
    first = attempt("mine", "GOOD0")
    await store.open_redemption(first)  # a delivery that died after recording it
    for n in range(3):
        await redeem.redeem(attempt(f"g{n}", f"BAD{n}"))

    assert (await redeem.redeem(first)).status is RedemptionStatus.REDEEMED


async def test_a_campaign_sets_its_own_limits_in_place_of_the_global_ones() -> None:
    store = await seeded(0)
    await store.create_campaign(
        Campaign("strict", CodeUseType.SINGLE, NOW, NOW, failure_limits="user=1/1h")
    )
    await store.create_campaign(
        Campaign("lenient", CodeUseType.SINGLE, NOW, NOW, failure_limits="user=off")
    )
    redeem = worker(store, FailureLimits(user=THREE))

    def on(code_type: str, rid: str) -> Redemption:
        return Redemption(rid, rid, "u1", "NOPE", NOW, NOW, code_type=code_type)

    strict = [(await redeem.redeem(on("strict", f"s{n}"))).reason_code for n in range(2)]
    lenient = [(await redeem.redeem(on("lenient", f"l{n}"))).reason_code for n in range(5)]

    assert strict == [ReasonCode.REDEMPTION_CODE_NOT_FOUND, LOCKED]
    assert lenient == [ReasonCode.REDEMPTION_CODE_NOT_FOUND] * 5


async def test_uniform_refusals_tell_every_guess_the_same_and_keep_the_real_reason() -> None:
    store = await seeded(0)
    await store.create_campaign(
        Campaign("hidden", CodeUseType.SINGLE, NOW, NOW, uniform_refusals=True)
    )
    for scan, state in [("SLEEPY", CodeState.INACTIVE), ("VOID", CodeState.INVALIDATED)]:
        await store.add_code(Code(scan, "hidden", scan, state, NOW, NOW))
    await store.add_code(Code("taken", "hidden", "TAKEN", CodeState.AVAILABLE, NOW, NOW))
    redeem = worker(store, FailureLimits(user=None))
    await redeem.redeem(Redemption("first", "first", "u2", "TAKEN", NOW, NOW, code_type="hidden"))

    ended = [
        await redeem.redeem(Redemption(scan, scan, "u1", scan, NOW, NOW, code_type="hidden"))
        for scan in ("NOPE", "SLEEPY", "VOID", "TAKEN")
    ]

    told = {RedemptionRecord.of(r).reasonCode for r in ended}
    assert told == {int(ReasonCode.REDEMPTION_CODE_NOT_FOUND)}
    assert {RedemptionRecord.of(r).message for r in ended} == {"no such code"}
    assert [RedemptionRecord.of(r, reveal=True).reasonCode for r in ended] == [
        ReasonCode.REDEMPTION_CODE_NOT_FOUND,
        ReasonCode.REDEMPTION_CODE_NOT_ACTIVE,
        ReasonCode.REDEMPTION_CODE_INVALID,
        ReasonCode.REDEMPTION_CODE_REDEEMED_BY_OTHER,
    ]
    stored = await store.get_redemption("SLEEPY")
    assert stored is not None and stored.reason_code is ReasonCode.REDEMPTION_CODE_NOT_ACTIVE


async def test_without_uniform_refusals_a_caller_is_told_the_real_reason() -> None:
    store = await seeded(0)
    await store.add_code(Code("s", "gems", "SLEEPY", CodeState.INACTIVE, NOW, NOW))
    ended = await worker(store, FailureLimits()).redeem(attempt("r", "SLEEPY"))
    assert RedemptionRecord.of(ended).reasonCode == ReasonCode.REDEMPTION_CODE_NOT_ACTIVE
