"""The store contract: what the services rely on, proven against every store.

Conditional transitions, events written with them, uniqueness, the
redemption gate, replies and the outbox, under concurrency. Each test runs
on MongoDB, on the embedded SQLite store and on the unit tests' in-memory fake.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.domain import attempts, jsonmaps, model
from shared.domain.conditions import holds
from shared.domain.fulfillment import Result
from shared.domain.model import (
    AttemptState,
    Campaign,
    CampaignFilter,
    Claim,
    Code,
    CodeRef,
    CodeUseType,
    Job,
    JobState,
    Redemption,
    RedemptionStatus,
    ReplyTo,
)
from shared.domain.profiles import IdentityKind, Profile, Session
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState
from shared.domain.throttling import FailureWindow, Limit
from shared.ports import Backlog, Store, Timers

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=1)
EARLIER = NOW - timedelta(minutes=1)


@pytest.fixture
def store(any_store: Store) -> Store:
    return any_store


ids = (f"e{n}" for n in itertools.count())


def new_id() -> str:
    return next(ids)


async def seed(store: Store, scan: str = "ABC-123", state: CodeState = CodeState.AVAILABLE) -> None:
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    await store.add_code(Code("code-1", "gems", scan, state, NOW, NOW, custom_code_info={"a": 1}))


async def test_two_hundred_concurrent_claims_have_exactly_one_winner(store: Store) -> None:
    await seed(store)

    async def claim(user: int) -> Code | None:
        change = model.claim(Claim(f"r{user}", f"u{user}"), now=NOW, new_id=new_id)
        return await store.apply(CodeRef("gems", "ABC123"), [change])

    results = await asyncio.gather(*(claim(u) for u in range(200)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    stored = await store.get_code(CodeRef("gems", "ABC123"))
    assert stored is not None and stored.code_state is CodeState.IN_PROGRESS
    assert stored.redeemed_by_user_id == winners[0].redeemed_by_user_id
    pending = await store.pending_events(limit=10)
    assert [[p.event.redemption_id for p in item.events] for item in pending] == [
        [winners[0].redemption_id]
    ]


async def test_a_transition_from_the_wrong_state_changes_nothing(store: Store) -> None:
    await seed(store, state=CodeState.INACTIVE)
    change = model.claim(Claim("r1", "u1"), now=NOW, new_id=new_id)
    assert await store.apply(CodeRef("gems", "ABC123"), [change]) is None
    stored = await store.get_code(CodeRef("gems", "ABC123"))
    assert stored is not None
    assert (stored.code_state, stored.version, stored.history) == (CodeState.INACTIVE, 1, ())
    assert await store.pending_events(limit=10) == []


async def test_each_event_carries_the_code_as_of_that_event(store: Store) -> None:
    await seed(store)
    claim = Claim("r1", "u1", {"note": "$not-a-field-path"})
    changes = [
        model.claim(claim, now=NOW, new_id=new_id),
        model.succeed(claim, {"granted": 5}, now=NOW, new_id=new_id),
    ]
    code = await store.apply(CodeRef("gems", "ABC123"), changes)
    assert code is not None and code.code_state is CodeState.REDEEMED and code.version == 3
    [item] = await store.pending_events(limit=10)
    first, second = item.events
    assert (first.event.name, first.code.code_state, first.code.version) == (
        "inprogress",
        CodeState.IN_PROGRESS,
        2,
    )
    assert first.code.custom_redemption_info == {"note": "$not-a-field-path"}
    assert (second.event.name, second.code.code_state, second.code.version) == (
        "redeemed",
        CodeState.REDEEMED,
        3,
    )
    assert second.code.custom_redemption_info == {"granted": 5}
    assert second.code.redemption_code_id == "code-1"
    stored = await store.get_code(CodeRef("gems", "ABC123"))
    assert stored is not None
    assert [(h.action.value, h.to_state) for h in stored.history] == [
        ("redeem", CodeState.IN_PROGRESS),
        ("succeed", CodeState.REDEEMED),
    ]


async def test_marking_relayed_keeps_events_added_since(store: Store) -> None:
    await seed(store)
    claim = Claim("r1", "u1")
    await store.apply(CodeRef("gems", "ABC123"), [model.claim(claim, now=NOW, new_id=new_id)])
    seen = await store.pending_events(limit=10)
    await store.apply(
        CodeRef("gems", "ABC123"),
        [model.succeed(claim, None, now=NOW, new_id=new_id)],
        redemption_id="r1",
    )
    await store.mark_relayed(seen)
    [item] = await store.pending_events(limit=10)
    assert [p.event.name for p in item.events] == ["redeemed"]
    await store.mark_relayed([item])
    assert await store.pending_events(limit=10) == []


async def test_a_scan_code_is_unique_per_campaign_in_any_spelling(store: Store) -> None:
    await seed(store, scan="ABC-123")
    with pytest.raises(DomainError) as refused:
        await store.add_code(Code("code-2", "gems", "abc 123", CodeState.AVAILABLE, NOW, NOW))
    assert refused.value.reason is ReasonCode.SCAN_CODE_EXISTS


async def test_a_campaign_is_created_once(store: Store) -> None:
    await seed(store)
    with pytest.raises(DomainError) as refused:
        await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    assert refused.value.reason is ReasonCode.CODE_TYPE_EXISTS


async def test_a_redemption_opens_once_and_its_first_outcome_stands(store: Store) -> None:
    pending = Redemption("r1", "q1", "u1", "ABC", NOW, NOW, replies=(ReplyTo("q", "c1"),))
    assert await store.open_redemption(pending) is None
    again = await store.open_redemption(pending)
    assert again is not None and again.status is RedemptionStatus.PENDING
    assert await store.pending_replies(limit=10) == []
    first = await store.finish_redemption(
        Redemption(
            "r1",
            "q1",
            "u1",
            "ABC",
            NOW,
            NOW,
            status=RedemptionStatus.REJECTED,
            reason_code=ReasonCode.REDEMPTION_CODE_NOT_ACTIVE,
        )
    )
    second = await store.finish_redemption(
        Redemption("r1", "q1", "u1", "ABC", NOW, NOW, status=RedemptionStatus.REDEEMED)
    )
    assert first == second
    assert second.reason_code is ReasonCode.REDEMPTION_CODE_NOT_ACTIVE
    [waiting] = await store.pending_replies(limit=10)
    assert waiting.replies == (ReplyTo("q", "c1"),)
    await store.add_reply("r1", ReplyTo("q", "c2"))
    await store.mark_replied([waiting])
    [still] = await store.pending_replies(limit=10)
    assert still.replies == (ReplyTo("q", "c2"),)
    await store.mark_replied([still])
    assert await store.pending_replies(limit=10) == []


@pytest.mark.parametrize(
    ("first", "then", "recorded"),
    [
        (RedemptionStatus.FAILED, RedemptionStatus.REDEEMED, True),
        (RedemptionStatus.FAILED, RedemptionStatus.REJECTED, False),
        (RedemptionStatus.REDEEMED, RedemptionStatus.REDEEMED, False),
    ],
    ids=["give-up-then-redeemed", "give-up-then-rejected", "redeemed-then-redeemed"],
)
async def test_a_give_up_yields_only_to_a_code_redeemed_after_all(
    store: Store, first: RedemptionStatus, then: RedemptionStatus, recorded: bool
) -> None:
    await store.open_redemption(Redemption("r1", "q1", "u1", "ABC", NOW, NOW))
    reason = ReasonCode.DELIVERY_LIMIT_EXCEEDED if first is RedemptionStatus.FAILED else None
    given = Redemption("r1", "q1", "u1", "ABC", NOW, NOW, status=first, reason_code=reason)
    assert await store.finish_redemption(given) == await store.get_redemption("r1")
    later = Redemption("r1", "q1", "u1", "ABC", NOW, LATER, status=then, attempt=2)
    finished = await store.finish_redemption(later)
    assert finished == await store.get_redemption("r1")
    expected = (then, None, 2) if recorded else (first, reason, 0)
    assert (finished.status, finished.reason_code, finished.attempt) == expected


async def test_custom_info_updates_only_at_the_expected_version(store: Store) -> None:
    await seed(store)
    updated = await store.set_custom_code_info("gems", "ABC123", 1, {"b": 2}, "op")
    assert updated is not None and (updated.version, updated.custom_code_info) == (2, {"b": 2})
    assert await store.set_custom_code_info("gems", "ABC123", 1, {"c": 3}, "op") is None


async def test_a_claim_for_another_redemption_or_version_changes_nothing(store: Store) -> None:
    await seed(store)
    claim = Claim("r1", "u1")
    await store.apply(CodeRef("gems", "ABC123"), [model.claim(claim, now=NOW, new_id=new_id)])
    other = model.succeed(Claim("r2", "u2"), None, now=NOW, new_id=new_id)
    assert await store.apply(CodeRef("gems", "ABC123"), [other], redemption_id="r2") is None
    stale = model.succeed(claim, None, now=NOW, new_id=new_id)
    assert await store.apply(CodeRef("gems", "ABC123"), [stale], version=1) is None
    done = await store.apply(CodeRef("gems", "ABC123"), [stale], redemption_id="r1", version=2)
    assert done is not None and done.code_state is CodeState.REDEEMED


async def test_codes_read_back_as_written(store: Store) -> None:
    info = {"reward": {"item": "gems", "quantity": 5, "tags": ["a", None, 1.5]}}
    await store.create_campaign(Campaign("a", CodeUseType.SINGLE, NOW, NOW, handler="h"))
    await store.create_campaign(Campaign("b", CodeUseType.SINGLE, NOW, NOW))
    written = Code("c1", "a", "SAME-1", CodeState.INACTIVE, NOW, NOW, custom_code_info=info)
    await store.add_code(written)
    await store.add_code(Code("c2", "b", "same 1", CodeState.AVAILABLE, NOW, NOW))
    assert await store.get_code(CodeRef("a", "SAME1")) == written
    assert {c.code_type for c in await store.find_codes("SAME1", limit=5)} == {"a", "b"}
    assert await store.get_code(CodeRef("a", "NOPE")) is None
    campaign = await store.get_campaign("a")
    assert campaign is not None and campaign.handler == "h" and campaign.created_at == NOW
    everything = CampaignFilter()
    assert [c.code_type for c in await store.list_campaigns(everything, skip=1, limit=5)] == ["b"]
    assert await store.count_campaigns(everything) == 2


async def test_a_users_redeemed_codes_are_those_in_state_redeemed(store: Store) -> None:
    await seed(store)
    await store.add_code(Code("code-2", "gems", "OTHER", CodeState.AVAILABLE, NOW, NOW))
    claim = Claim("r1", "u1")
    redeem = [
        model.claim(claim, now=NOW, new_id=new_id),
        model.succeed(claim, None, now=NOW, new_id=new_id),
    ]
    await store.apply(CodeRef("gems", "ABC123"), redeem)
    await store.apply(
        CodeRef("gems", "OTHER"), [model.claim(Claim("r2", "u1"), now=NOW, new_id=new_id)]
    )
    assert [c.scan_code for c in await store.redeemed_codes("u1", None)] == ["ABC-123"]
    assert await store.redeemed_codes("u1", "elsewhere") == []
    assert await store.redeemed_codes("u2", None) == []


async def shared_campaign(store: Store, max_redemptions: int | None = 100, **fields: Any) -> None:
    campaign = Campaign(
        "promo",
        CodeUseType.MULTI,
        NOW,
        NOW,
        scan_code="SPRING-25",
        max_redemptions=max_redemptions,
        **fields,
    )
    await store.create_campaign(campaign)


async def test_slots_are_given_exactly_up_to_max_redemptions(store: Store) -> None:
    await shared_campaign(store, max_redemptions=100)
    taken = await asyncio.gather(*(store.take_slot("promo", f"r{n}", NOW) for n in range(300)))
    assert sum(taken) == 100
    campaign = await store.get_campaign("promo")
    assert campaign is not None and campaign.redemption_count == 100
    holder = next(f"r{n}" for n, ok in enumerate(taken) if ok)
    assert await store.take_slot("promo", holder, NOW) is True
    assert await store.take_slot("promo", "late", NOW) is False
    await store.release_slot("promo", holder, refund=True)
    await store.release_slot("promo", holder, refund=True)
    campaign = await store.get_campaign("promo")
    assert campaign is not None and campaign.redemption_count == 99
    assert await store.take_slot("promo", "late", NOW) is True
    await store.release_slot("promo", "late", refund=False)
    campaign = await store.get_campaign("promo")
    assert campaign is not None and campaign.redemption_count == 100


@pytest.mark.parametrize(
    "closed",
    [
        {"is_disabled": True},
        {"valid_start": NOW + timedelta(seconds=1)},
        {"valid_end": NOW},
        {"max_redemptions": 0},
    ],
)
async def test_a_closed_campaign_gives_no_slot(store: Store, closed: dict[str, Any]) -> None:
    await shared_campaign(store, **({"max_redemptions": None} | closed))
    campaign = await store.get_campaign("promo")
    assert campaign is not None and not holds(model.slot_open(NOW), campaign)
    assert await store.take_slot("promo", "r1", NOW) is False


@pytest.mark.parametrize(
    "open_",
    [
        {},
        {"valid_start": NOW},
        {"valid_end": NOW + timedelta(milliseconds=1)},
        {"max_redemptions": 1},
    ],
)
async def test_an_open_campaign_gives_a_slot(store: Store, open_: dict[str, Any]) -> None:
    await shared_campaign(store, **({"max_redemptions": None} | open_))
    campaign = await store.get_campaign("promo")
    assert campaign is not None and holds(model.slot_open(NOW), campaign)
    assert await store.take_slot("promo", "r1", NOW) is True


LISTED = [
    Campaign("always", CodeUseType.SINGLE, NOW, NOW),
    Campaign("starts-now", CodeUseType.MULTI, NOW, NOW, scan_code="S1", valid_start=NOW),
    Campaign("starts-later", CodeUseType.MULTI, NOW, NOW, scan_code="S2", valid_start=LATER),
    Campaign("ends-now", CodeUseType.SINGLE, NOW, NOW, valid_end=NOW),
    Campaign("ends-later", CodeUseType.SINGLE, NOW, NOW, valid_start=EARLIER, valid_end=LATER),
    Campaign("off", CodeUseType.MULTI, NOW, NOW, scan_code="S3", is_disabled=True),
]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (CampaignFilter(), sorted(c.code_type for c in LISTED)),
        (CampaignFilter(valid_at=NOW), ["always", "ends-later", "off", "starts-now"]),
        (CampaignFilter(valid_at=LATER), ["always", "off", "starts-later", "starts-now"]),
        (CampaignFilter(code_use_type=CodeUseType.MULTI), ["off", "starts-later", "starts-now"]),
        (CampaignFilter(is_disabled=False, valid_at=NOW), ["always", "ends-later", "starts-now"]),
        (CampaignFilter(code_use_type=CodeUseType.SINGLE, is_disabled=True), []),
    ],
)
async def test_a_listing_shows_the_campaigns_its_filter_matches(
    store: Store, where: CampaignFilter, expected: list[str]
) -> None:
    for campaign in LISTED:
        await store.create_campaign(campaign)
    assert sorted(c.code_type for c in LISTED if where.matches(c)) == expected
    listed = await store.list_campaigns(where, skip=0, limit=100)
    assert [c.code_type for c in listed] == expected
    assert await store.count_campaigns(where) == len(expected)
    second = await store.list_campaigns(where, skip=1, limit=1)
    assert [c.code_type for c in second] == expected[1:2]


async def test_a_user_holds_one_claim_of_a_shared_code(store: Store) -> None:
    await shared_campaign(store)
    assert await store.user_holder("promo", "u1") is None
    holders = await asyncio.gather(*(store.reserve_user("promo", "u1", f"r{n}") for n in range(20)))
    assert len(set(holders)) == 1
    assert await store.user_holder("promo", "u1") == holders[0]
    assert await store.user_holder("promo", "u2") is None
    await store.release_user("promo", "u1", "not-the-holder")
    assert await store.reserve_user("promo", "u1", "other") == holders[0]
    await store.release_user("promo", "u1", holders[0])
    assert await store.user_holder("promo", "u1") is None
    assert await store.reserve_user("promo", "u1", "other") == "other"


async def test_an_instance_is_created_once_with_its_events(store: Store) -> None:
    await shared_campaign(store)
    campaign = await store.get_campaign("promo")
    assert campaign is not None
    claim = Claim("r1", "u1")
    changes = [
        model.claim(claim, now=NOW, new_id=new_id),
        model.succeed(claim, {"granted": 1}, now=NOW, new_id=new_id),
    ]
    created, new = await store.add_instance(model.instance_of(campaign, claim, NOW), changes)
    assert (created.code_state, created.redeemed_by_user_id, new) == (
        CodeState.REDEEMED,
        "u1",
        True,
    )
    other = Claim("r2", "u1")
    again, new = await store.add_instance(
        model.instance_of(campaign, other, NOW), [model.claim(other, now=NOW, new_id=new_id)]
    )
    assert (again.redemption_id, new) == ("r1", False)
    ref = CodeRef("promo", "SPRING25", "u1")
    assert await store.get_code(ref) == again
    [pending] = await store.pending_events(limit=10)
    assert [p.event.name for p in pending.events] == ["inprogress", "redeemed"]
    assert [c.scan_code for c in await store.redeemed_codes("u1", None)] == ["SPRING-25"]
    await store.mark_relayed([pending])
    assert await store.pending_events(limit=10) == []
    assert await store.find_shared_campaign("SPRING25") == campaign


async def test_a_shared_scan_code_belongs_to_one_campaign(store: Store) -> None:
    await shared_campaign(store)
    with pytest.raises(DomainError) as refused:
        await store.create_campaign(
            Campaign("other", CodeUseType.MULTI, NOW, NOW, scan_code="spring 25")
        )
    assert refused.value.reason is ReasonCode.SCAN_CODE_EXISTS


async def test_operators_count_delete_and_reset_a_campaigns_codes(store: Store) -> None:
    await seed(store)
    for n, state in enumerate([CodeState.INACTIVE, CodeState.INVALIDATED, CodeState.AVAILABLE]):
        await store.add_code(Code(f"x{n}", "gems", f"X{n}", state, NOW, NOW))
    held = Claim("r1", "u1")
    await store.apply(CodeRef("gems", "ABC123"), [model.claim(held, now=NOW, new_id=new_id)])
    await store.mark_relayed(await store.pending_events(limit=10))
    counts = await store.inventory("gems", shared=False)
    assert {s: n for s, n in counts.items() if n} == {
        CodeState.IN_PROGRESS: 1,
        CodeState.INACTIVE: 1,
        CodeState.INVALIDATED: 1,
        CodeState.AVAILABLE: 1,
    }
    assert await store.reset_codes("gems", CodeState.AVAILABLE, "reset-1", "op", NOW) == 3
    counts = await store.inventory("gems", shared=False)
    assert (counts[CodeState.AVAILABLE], counts[CodeState.IN_PROGRESS]) == (3, 1)
    events = [p.event for item in await store.pending_events(limit=10) for p in item.events]
    assert sorted(e.event_id for e in events) == ["reset-1:x0", "reset-1:x1", "reset-1:x2"]
    invalidated = await store.get_code(CodeRef("gems", "X1"))
    assert invalidated is not None and invalidated.invalidation_reason is None
    assert [(h.action.value, h.from_state) for h in invalidated.history] == [
        ("reset", CodeState.INVALIDATED)
    ]
    assert await store.delete_codes("gems") == 3
    assert await store.get_code(CodeRef("gems", "ABC123")) is not None, "a held code stays"


async def test_recent_redemptions_come_newest_first(store: Store) -> None:
    for n in range(5):
        at = NOW + timedelta(seconds=n)
        await store.open_redemption(
            Redemption(f"r{n}", f"q{n}", "u", "ABC", at, at, code_type="a" if n % 2 else "b")
        )
    latest = await store.recent_redemptions(None, limit=3, after=None)
    assert [r.redemption_id for r in latest] == ["r4", "r3", "r2"]
    older = await store.recent_redemptions(None, limit=3, after=model.Place.of(latest[-1]))
    assert [r.redemption_id for r in older] == ["r1", "r0"]
    assert [r.redemption_id for r in await store.recent_redemptions("a", limit=9, after=None)] == [
        "r3",
        "r1",
    ]
    earlier = model.Place(NOW + timedelta(seconds=3))
    assert [
        r.redemption_id for r in await store.recent_redemptions(None, limit=9, after=earlier)
    ] == [
        "r2",
        "r1",
        "r0",
    ]


async def test_pages_of_recent_redemptions_accepted_in_one_millisecond_miss_none(
    store: Store,
) -> None:
    at = NOW + timedelta(microseconds=250)  # kept to the millisecond by the stores
    for n in range(7):
        await store.open_redemption(Redemption(f"r{n}", f"q{n}", "u", "ABC", at, at, "a"))
    await store.open_redemption(
        Redemption("old", "q", "u", "ABC", NOW - timedelta(seconds=1), NOW, "a")
    )
    seen: list[str] = []
    after: model.Place | None = None
    while page := await store.recent_redemptions("a", limit=3, after=after):
        seen += [r.redemption_id for r in page]
        after = model.Place.of(page[-1])
    assert seen == ["r6", "r5", "r4", "r3", "r2", "r1", "r0", "old"]


async def test_bulk_adds_report_which_codes_were_new(store: Store) -> None:
    await seed(store, scan="OLD-1")
    codes = [
        Code(f"b{n}", "gems", scan, CodeState.INACTIVE, NOW, NOW, job_id="job-1")
        for n, scan in enumerate(["NEW-1", "old 1", "NEW-2", "new-1"])
    ]
    assert await store.add_codes(codes) == [True, False, True, False]
    assert await store.add_codes(codes) == [False] * 4
    assert await store.count_job_codes("job-1") == 2
    batches = [batch async for batch in store.codes_of("gems", batch=2)]
    assert [len(b) for b in batches] == [2, 1]
    assert sorted(c.scan_code for b in batches for c in b) == ["NEW-1", "NEW-2", "OLD-1"]
    of_job = [c.scan_code async for b in store.codes_of("gems", job_id="job-1") for c in b]
    assert sorted(of_job) == ["NEW-1", "NEW-2"]


async def test_a_job_records_its_progress(store: Store) -> None:
    job = Job("job-1", "gems", 10, CodeState.INACTIVE, "FiveByFive", {}, NOW, NOW)
    await store.create_job(job)
    done = dataclasses.replace(job, done=10, state=JobState.COMPLETED)
    await store.update_job(done)
    assert await store.get_job("job-1") == done
    assert await store.get_job("nope") is None


# Fulfillment attempts and their timers


async def claimed_with_timer(
    store: Store, deadline_s: float = 60, **campaign_fields: Any
) -> Campaign:
    campaign = Campaign("gems", CodeUseType.SINGLE, NOW, NOW, handler="h", **campaign_fields)
    await store.create_campaign(dataclasses.replace(campaign, timeout_s=deadline_s))
    await store.add_code(Code("code-1", "gems", "ABC", CodeState.AVAILABLE, NOW, NOW))
    timed = dataclasses.replace(campaign, timeout_s=deadline_s)
    fields = attempts.started(timed, NOW, 10) | attempts.calling(timed, NOW, 10)  # called
    change = model.claim(Claim("r1", "u1"), now=NOW, new_id=new_id, attempt_fields=fields)
    assert await store.apply(CodeRef("gems", "ABC"), [change]) is not None
    return campaign


async def test_a_transition_expecting_another_attempt_changes_nothing(store: Store) -> None:
    await claimed_with_timer(store)
    ref, claim = CodeRef("gems", "ABC"), Claim("r1", "u1")
    done = model.succeed(claim, None, now=NOW, new_id=new_id)
    assert await store.apply(ref, [done], redemption_id="r1", attempt=1) is None
    redeemed = await store.apply(ref, [done], redemption_id="r1", attempt=0)
    assert redeemed is not None and redeemed.code_state is CodeState.REDEEMED


async def test_update_attempt_sets_fields_only_on_the_expected_attempt(store: Store) -> None:
    await claimed_with_timer(store)
    ref = CodeRef("gems", "ABC")
    later = NOW + timedelta(seconds=5)
    fields = {"next_poll_at": later, "timer_at": later, "attempt_state": AttemptState.WAITING}
    expect: dict[str, Any] = {"redemption_id": "r1", "state": CodeState.IN_PROGRESS}
    assert await store.update_attempt(ref, attempt=1, fields=fields, **expect) is None
    updated = await store.update_attempt(ref, attempt=0, fields=fields, **expect)
    assert updated is not None
    stored = await store.get_code(ref)
    assert stored == updated
    assert (stored.next_poll_at, stored.timer_at, stored.attempt_state) == (
        later,
        later,
        AttemptState.WAITING,
    )
    assert stored.version == 2  # no change of state: no new version, no event
    [pending] = await store.pending_events(limit=10)
    assert [p.event.name for p in pending.events] == ["inprogress"]


async def test_the_outbox_backlog_counts_unrelayed_events_and_the_oldests_time(
    store: Store,
) -> None:
    assert await store.backlog() == Backlog(0, None)
    await seed(store)
    await store.add_code(Code("code-2", "gems", "XYZ", CodeState.AVAILABLE, NOW, NOW))
    later = NOW + timedelta(seconds=5)
    await store.apply(
        CodeRef("gems", "ABC123"), [model.claim(Claim("r1", "u1"), now=NOW, new_id=new_id)]
    )
    await store.apply(
        CodeRef("gems", "XYZ"), [model.claim(Claim("r2", "u2"), now=later, new_id=new_id)]
    )

    assert await store.backlog() == Backlog(2, NOW)
    first = [item for item in await store.pending_events(limit=10) if item.code_id == "code-1"]
    await store.mark_relayed(first)
    assert await store.backlog() == Backlog(1, later)


async def test_timers_count_those_set_and_those_due(store: Store) -> None:
    assert await store.timers(NOW) == Timers(0, 0)
    await claimed_with_timer(store, deadline_s=30)

    assert await store.timers(NOW) == Timers(1, 0)
    assert await store.timers(NOW + timedelta(seconds=30)) == Timers(1, 1)
    await store.take_due(NOW + timedelta(seconds=30), 10, limit=10)  # leased: set, not due
    assert await store.timers(NOW + timedelta(seconds=35)) == Timers(1, 0)


async def test_due_timers_are_taken_once_each_and_leased(store: Store) -> None:
    await claimed_with_timer(store, deadline_s=30)
    ref = CodeRef("gems", "ABC")
    assert await store.take_due(NOW + timedelta(seconds=29), 10, limit=10) == []
    at_deadline = NOW + timedelta(seconds=30)
    taken = await asyncio.gather(*(store.take_due(at_deadline, 10, limit=10) for _ in range(8)))
    winners = [due for batch in taken for due in batch]
    assert len(winners) == 1
    [due] = winners
    assert due.ref == ref and due.code.timer_at == at_deadline
    stored = await store.get_code(ref)
    assert stored is not None and stored.timer_at == at_deadline + timedelta(seconds=10)
    assert await store.take_due(at_deadline + timedelta(seconds=9), 10, limit=10) == []
    again = await store.take_due(at_deadline + timedelta(seconds=10), 10, limit=10)
    assert [d.ref for d in again] == [ref]


async def test_a_lease_ends_no_later_than_the_deadline(store: Store) -> None:
    await claimed_with_timer(store, deadline_s=30, is_async=True)
    ref = CodeRef("gems", "ABC")
    [due] = await store.take_due(NOW + timedelta(seconds=25), 10, limit=10)
    assert due.code.timer_at == NOW + timedelta(seconds=10)  # the first look, at the lease's end
    stored = await store.get_code(ref)
    assert stored is not None and stored.timer_at == NOW + timedelta(seconds=30)


@pytest.mark.parametrize(
    ("taken_s", "leased_s"),
    [
        (10, 20),  # the lease ends first
        (25, 30),  # the deadline comes first
        (30, 40),  # the deadline is now: a full lease
        (45, 55),  # the deadline has passed: a full lease
    ],
)
async def test_a_taken_timer_moves_to_the_domains_lease(
    store: Store, taken_s: int, leased_s: int
) -> None:
    await claimed_with_timer(store, deadline_s=30, is_async=True)
    at = NOW + timedelta(seconds=taken_s)
    [due] = await store.take_due(at, 10, limit=10)
    stored = await store.get_code(CodeRef("gems", "ABC"))
    assert stored is not None and stored.timer_at == NOW + timedelta(seconds=leased_s)
    assert stored.timer_at == attempts.lease(due.code, at, 10)


async def test_timers_of_shared_code_instances_are_taken_too(store: Store) -> None:
    await shared_campaign(store)
    campaign = await store.get_campaign("promo")
    assert campaign is not None
    claim = Claim("r1", "u1")
    due_at = NOW + timedelta(seconds=3)
    fields = {"timer_at": due_at, "deadline_at": due_at}
    change = model.claim(claim, now=NOW, new_id=new_id, attempt_fields=fields)
    await store.add_instance(model.instance_of(campaign, claim, NOW), [change])
    [due] = await store.take_due(due_at, 10, limit=10)
    assert due.ref == CodeRef("promo", "SPRING25", "u1")
    assert due.code.redemption_id == "r1"


async def test_codes_with_a_timer_are_neither_reset_nor_deleted(store: Store) -> None:
    await claimed_with_timer(store)
    ref = CodeRef("gems", "ABC")
    failed = model.fail(
        Claim("r1", "u1"),
        "E",
        "failed",
        now=NOW,
        new_id=new_id,
        attempt_fields={"retry_at": NOW, "timer_at": NOW},
    )
    assert await store.apply(ref, [failed]) is not None
    assert await store.reset_codes("gems", CodeState.AVAILABLE, "reset-1", "ops", NOW) == 0
    assert await store.delete_codes("gems") == 0
    stored = await store.get_code(ref)
    assert stored is not None and stored.code_state is CodeState.FAILED


async def test_operators_delete_and_reset_exactly_the_codes_the_domain_allows(
    store: Store,
) -> None:
    await claimed_with_timer(store)
    failed = model.fail(
        Claim("r1", "u1"),
        "E",
        "failed",
        now=NOW,
        new_id=new_id,
        attempt_fields={"retry_at": LATER, "timer_at": LATER},
    )
    assert await store.apply(CodeRef("gems", "ABC"), [failed]) is not None
    for n, state in enumerate(CodeState):
        await store.add_code(Code(f"s{n}", "gems", f"S{n}", state, NOW, NOW))

    async def codes() -> list[Code]:
        return [code async for batch in store.codes_of("gems") for code in batch]

    resettable = [c.redemption_code_id for c in await codes() if holds(model.resettable(), c)]
    assert len(resettable) == len(CodeState) - 1, "all but the held and the timed"
    assert await store.reset_codes("gems", CodeState.AVAILABLE, "reset-1", "op", NOW) == len(
        resettable
    )
    events = [p.event for item in await store.pending_events(limit=20) for p in item.events]
    assert {e.event_id for e in events if e.event_id.startswith("reset-1:")} == {
        f"reset-1:{code_id}" for code_id in resettable
    }
    deletable = [c.scan_code for c in await codes() if holds(model.deletable(), c)]
    assert await store.delete_codes("gems") == len(deletable) == len(resettable)
    held = next(n for n, state in enumerate(CodeState) if state is CodeState.IN_PROGRESS)
    assert sorted(c.scan_code for c in await codes()) == ["ABC", f"S{held}"]


async def test_a_burst_of_code_timers_does_not_starve_an_instance_timer(store: Store) -> None:
    await shared_campaign(store)
    campaign = await store.get_campaign("promo")
    assert campaign is not None
    claim = Claim("r-shared", "u1")
    first = {"timer_at": NOW, "deadline_at": NOW}
    change = model.claim(claim, now=NOW, new_id=new_id, attempt_fields=first)
    await store.add_instance(model.instance_of(campaign, claim, NOW), [change])
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    for n in range(5):
        await store.add_code(Code(f"c{n}", "gems", f"G{n}", CodeState.AVAILABLE, NOW, NOW))
        due = {"timer_at": NOW + timedelta(seconds=1), "deadline_at": NOW}
        personal = model.claim(Claim(f"r{n}", f"u{n}"), now=NOW, new_id=new_id, attempt_fields=due)
        await store.apply(CodeRef("gems", f"G{n}"), [personal])
    taken = await store.take_due(NOW + timedelta(seconds=2), 10, limit=2)
    assert CodeRef("promo", "SPRING25", "u1") in [d.ref for d in taken]
    assert len(taken) == 2


async def test_pending_events_come_oldest_first(store: Store) -> None:
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    scans = [f"NEW{n}" for n in range(4)] + ["OLD"]
    for scan in scans:
        await store.add_code(Code(f"id-{scan}", "gems", scan, CodeState.AVAILABLE, NOW, NOW))
    old = Claim("r-old", "u-old")
    await store.apply(
        CodeRef("gems", "OLD"),
        [
            model.claim(old, now=NOW, new_id=new_id),
            model.succeed(old, None, now=NOW, new_id=new_id),
        ],
    )
    for n, scan in enumerate(scans[:-1]):
        later = NOW + timedelta(seconds=n + 1)
        claim = model.claim(Claim(f"r{n}", f"u{n}"), now=later, new_id=new_id)
        await store.apply(CodeRef("gems", scan), [claim])
    first, second = await store.pending_events(limit=2)
    assert (first.code_id, second.code_id) == ("id-OLD", "id-NEW0")


async def test_deleting_and_resetting_codes_keeps_their_pending_events(store: Store) -> None:
    await seed(store)
    claim = Claim("r1", "u1")
    redeemed = [
        model.claim(claim, now=NOW, new_id=new_id),
        model.succeed(claim, None, now=NOW, new_id=new_id),
    ]
    await store.apply(CodeRef("gems", "ABC123"), redeemed)
    await store.add_code(Code("x1", "gems", "X1", CodeState.INACTIVE, NOW, NOW))
    assert await store.reset_codes("gems", CodeState.AVAILABLE, "reset-1", "op", NOW) == 2
    assert await store.delete_codes("gems") == 2
    assert await store.get_code(CodeRef("gems", "ABC123")) is None
    pending = await store.pending_events(limit=10)
    by_code = {item.code_id: [p.event.name for p in item.events] for item in pending}
    assert by_code == {
        "code-1": ["inprogress", "redeemed", "activated"],
        "x1": ["activated"],
    }
    await store.add_code(Code("code-2", "gems", "ABC-123", CodeState.AVAILABLE, NOW, NOW))
    await store.mark_relayed(pending)
    assert await store.pending_events(limit=10) == []


def hostile_map() -> dict[str, Any]:
    """A map the API accepts, holding what a store is prone to change or refuse."""
    deep: dict[str, Any] = {"$date": 1}
    for _ in range(jsonmaps.MAX_DEPTH - 2):
        deep = {"a.b": deep}
    return jsonmaps.checked(
        {
            "$date": 1e17,
            "$set": {"a.b": 1, "$inc": {"$date": 5}},
            "": {"": ""},
            "%": "100%",
            "%24date": "%2E",
            "a.b.c": [{"$oid": "x"}, [1, [2.5, {"$date": {"$numberLong": "1"}}]]],
            "ключ ✓": "значение 🎁",
            "nul\x00key": "nul\x00value",
            "ints": [2**63 - 1, -(2**63), 0],
            "floats": [1e20, -0.5, 5e-324],
            "scalars": [True, False, None, ""],
            "deep": deep,
        }
    )


async def test_a_callers_maps_read_back_unchanged_from_codes_events_and_exports(
    store: Store,
) -> None:
    info, changed = hostile_map(), {**hostile_map(), "$changed": True}
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    await store.add_code(Code("c1", "gems", "A1", CodeState.AVAILABLE, NOW, NOW))
    bulk = Code("c2", "gems", "A2", CodeState.AVAILABLE, NOW, NOW, custom_code_info=info)
    assert await store.add_codes([bulk]) == [True]
    assert await store.set_custom_code_info("gems", "A1", 1, changed, "op") is not None
    claim = Claim("r1", "u1", info)
    done = attempts.succeeded(Result(True, True, info))
    redeem = [
        model.claim(claim, now=NOW, new_id=new_id),
        model.succeed(claim, info, now=NOW, new_id=new_id, attempt_fields=done),
    ]
    applied = await store.apply(CodeRef("gems", "A1"), redeem)
    [item] = await store.pending_events(limit=10)
    codes = [
        applied,
        await store.get_code(CodeRef("gems", "A1")),
        *[pending.code for pending in item.events],
        *await store.redeemed_codes("u1", None),
    ]
    for code in codes:
        assert code is not None
        assert (code.custom_code_info, code.custom_redemption_info) == (changed, info)
    assert codes[0] is not None and codes[0].response is not None
    assert codes[0].response["customRedemptionInfo"] == info
    exported = [code async for batch in store.codes_of("gems") for code in batch]
    assert [code.custom_code_info for code in exported] == [changed, info]


async def test_a_callers_maps_read_back_unchanged_from_redemptions(store: Store) -> None:
    info = hostile_map()
    response = {"customRedemptionInfo": info}
    code = Code(
        "c1",
        "gems",
        "A1",
        CodeState.REDEEMED,
        NOW,
        NOW,
        custom_code_info=info,
        custom_redemption_info=info,
        response=response,
    )
    opened = Redemption("r1", "q1", "u1", "A1", NOW, NOW, custom_redemption_info=info)
    assert await store.open_redemption(opened) is None
    assert await store.open_redemption(opened) == opened
    done = dataclasses.replace(opened, status=RedemptionStatus.REDEEMED, code=code)
    finished = await store.finish_redemption(done)
    assert finished == done
    assert await store.get_redemption("r1") == done
    assert await store.recent_redemptions(None, limit=5, after=None) == [done]


async def test_a_callers_maps_read_back_unchanged_from_campaigns_instances_and_jobs(
    store: Store,
) -> None:
    info, changed = hostile_map(), {**hostile_map(), "$changed": True}
    await shared_campaign(store, custom_code_info=info)
    campaign = await store.get_campaign("promo")
    assert campaign is not None and campaign.custom_code_info == info
    updated = await store.update_campaign("promo", 1, {"custom_code_info": changed}, NOW)
    assert updated is not None and updated == await store.get_campaign("promo")
    assert updated.custom_code_info == changed
    claim = Claim("r1", "u1", info)
    instance, _ = await store.add_instance(
        model.instance_of(updated, claim, NOW), [model.claim(claim, now=NOW, new_id=new_id)]
    )
    assert await store.get_code(CodeRef("promo", "SPRING25", "u1")) == instance
    [item] = await store.pending_events(limit=10)
    for code in (instance, item.events[0].code):
        assert (code.custom_code_info, code.custom_redemption_info) == (changed, info)
    job = Job("j1", "promo", 1, CodeState.AVAILABLE, "Custom", info, NOW, NOW)
    job = dataclasses.replace(job, custom_code_info=info)
    await store.create_job(job)
    assert await store.get_job("j1") == job


async def test_a_users_redeemed_codes_come_in_the_order_redeemed(store: Store) -> None:
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    for scan in ("LATE", "EARLY"):
        await store.add_code(Code(scan, "gems", scan, CodeState.AVAILABLE, NOW, NOW))
    for n, scan in enumerate(("EARLY", "LATE")):
        at, claim = NOW + timedelta(seconds=n), Claim(f"r{n}", "u1")
        redeem = [
            model.claim(claim, now=at, new_id=new_id),
            model.succeed(claim, None, now=at, new_id=new_id),
        ]
        await store.apply(CodeRef("gems", scan), redeem)
    assert [c.scan_code for c in await store.redeemed_codes("u1", None)] == ["EARLY", "LATE"]


async def test_updating_custom_info_moves_updated_at(store: Store) -> None:
    long_ago = datetime(2000, 1, 1, tzinfo=UTC)
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, long_ago, long_ago))
    await store.add_code(Code("c1", "gems", "A1", CodeState.AVAILABLE, long_ago, long_ago))
    updated = await store.set_custom_code_info("gems", "A1", 1, {"b": 2}, "op")
    assert updated is not None and updated.updated_at > long_ago
    assert await store.get_code(CodeRef("gems", "A1")) == updated


async def test_what_does_not_exist_gives_no_slot_and_cannot_be_finished(store: Store) -> None:
    assert await store.take_slot("nowhere", "r1", NOW) is False
    with pytest.raises(LookupError):
        await store.finish_redemption(Redemption("r1", "q1", "u1", "A1", NOW, NOW))
    await store.add_reply("r1", ReplyTo("q", "c1"))
    await store.mark_replied([Redemption("r1", "q1", "u1", "A1", NOW, NOW)])
    assert await store.get_redemption("r1") is None


async def test_a_users_claim_always_names_its_holder_while_others_come_and_go(
    store: Store,
) -> None:
    await shared_campaign(store)
    holders: list[str] = []

    async def churn(worker: int) -> None:
        for n in range(40):
            holder = await store.reserve_user("promo", "u1", f"r{worker}-{n}")
            holders.append(holder)
            await store.release_user("promo", "u1", holder)

    await asyncio.gather(*(churn(w) for w in range(4)))
    assert len(holders) == 160 and "" not in holders


async def test_due_timers_are_taken_earliest_first_across_codes_and_instances(
    store: Store,
) -> None:
    await shared_campaign(store)
    campaign = await store.get_campaign("promo")
    assert campaign is not None
    claim = Claim("r-shared", "u1")
    at = {"timer_at": NOW + timedelta(seconds=1), "deadline_at": NOW + timedelta(seconds=60)}
    change = model.claim(claim, now=NOW, new_id=new_id, attempt_fields=at)
    await store.add_instance(model.instance_of(campaign, claim, NOW), [change])
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    for n in (0, 2):
        await store.add_code(Code(f"c{n}", "gems", f"G{n}", CodeState.AVAILABLE, NOW, NOW))
        at = {"timer_at": NOW + timedelta(seconds=n), "deadline_at": NOW + timedelta(seconds=60)}
        personal = model.claim(Claim(f"r{n}", f"u{n}"), now=NOW, new_id=new_id, attempt_fields=at)
        await store.apply(CodeRef("gems", f"G{n}"), [personal])
    later = NOW + timedelta(seconds=3)
    taken = [d for _ in range(3) for d in await store.take_due(later, 10, limit=1)]
    assert [d.code.redemption_id for d in taken] == ["r0", "r-shared", "r2"]


async def test_a_finished_redemption_keeps_what_it_was_opened_with(store: Store) -> None:
    opened = Redemption("r1", "q1", "u1", "ABC", NOW, NOW, custom_redemption_info={"note": "first"})
    await store.open_redemption(opened)
    later = NOW + timedelta(seconds=5)
    outcome = dataclasses.replace(
        opened,
        request_id="q-other",
        user_id="u-other",
        accepted_at=later,
        custom_redemption_info={"note": "other"},
        status=RedemptionStatus.REJECTED,
        reason_code=ReasonCode.REDEMPTION_CODE_NOT_FOUND,
        message="no such code",
        code_type="gems",
        updated_at=later,
        completed_at=later,
    )
    finished = await store.finish_redemption(outcome)
    assert finished == await store.get_redemption("r1")
    assert (finished.request_id, finished.user_id, finished.accepted_at) == ("q1", "u1", NOW)
    assert finished.custom_redemption_info == {"note": "first"}
    assert (finished.status, finished.reason_code, finished.message) == (
        RedemptionStatus.REJECTED,
        ReasonCode.REDEMPTION_CODE_NOT_FOUND,
        "no such code",
    )
    assert (finished.code_type, finished.updated_at, finished.completed_at) == (
        "gems",
        later,
        later,
    )


FIVE_PER_MINUTE = Limit(5, timedelta(minutes=1))


def admitting_at(at: datetime, limit: Limit) -> Callable[[FailureWindow], FailureWindow]:
    return lambda window: window.admit("x", at, limit)


async def test_a_failure_window_admits_no_more_than_its_limit_under_concurrency(
    store: Store,
) -> None:
    async def attempt(n: int) -> bool:
        def admit(window: FailureWindow) -> FailureWindow:
            return window.admit(f"a{n}", NOW, FIVE_PER_MINUTE)

        after = await store.change_failure_window("user:u1", FIVE_PER_MINUTE, admit)
        return after.holds(f"a{n}")

    admitted = await asyncio.gather(*(attempt(n) for n in range(20)))

    assert sum(admitted) == 5
    [window] = await store.failure_windows(["user:u1", "user:nobody"])
    assert sorted(e.attempt_id for e in window.entries) == sorted(
        f"a{n}" for n, ok in enumerate(admitted) if ok
    )
    assert window.retry_after(NOW) == timedelta(minutes=1)


async def test_a_failure_window_gives_back_entries_and_is_forgotten_when_empty(
    store: Store,
) -> None:
    limit = FIVE_PER_MINUTE
    await store.change_failure_window("key:k", limit, lambda w: w.admit("a1", NOW, limit))
    await store.change_failure_window("key:k", limit, lambda w: w.admit("a2", LATER, limit))

    after = await store.change_failure_window("key:k", limit, lambda w: w.without("a1"))

    assert [e.attempt_id for e in after.entries] == ["a2"]
    [stored] = await store.failure_windows(["key:k"])
    assert stored.entries == after.entries and stored.limit == limit
    await store.change_failure_window("key:k", limit, lambda w: w.without("a2"))
    assert await store.failure_windows(["key:k"]) == []
    assert await store.clear_failure_window("key:k") is False


async def test_live_failure_windows_page_by_scope_and_leave_out_expired_ones(
    store: Store,
) -> None:
    limit = FIVE_PER_MINUTE
    for scope, at in [("user:b", NOW), ("user:a", NOW), ("user:c", EARLIER)]:
        await store.change_failure_window(scope, limit, admitting_at(at, limit))

    live = await store.live_failure_windows(NOW + timedelta(seconds=30))

    assert [w.scope for w in live] == ["user:a", "user:b"]
    after_a = await store.live_failure_windows(NOW, after="user:a", limit=1)
    assert [w.scope for w in after_a] == ["user:b"]
    assert await store.clear_failure_window("user:a") is True
    assert [w.scope for w in await store.live_failure_windows(NOW)] == ["user:b"]


FAR = datetime(2100, 1, 1, tzinfo=UTC)  # later than any TTL monitor's clock: only purges delete
ANON, UNIVERSAL = IdentityKind.ANONYMOUS, IdentityKind.UNIVERSAL


def profile(
    profile_id: str, app_id: str = "app", kind: IdentityKind = ANON, external_id: str = "x1"
) -> Profile:
    return Profile(profile_id, app_id, kind, external_id, NOW)


async def test_a_profile_is_added_once_per_identity_and_read_back(store: Store) -> None:
    first = profile("p1")
    assert await store.add_profile(first) == first

    again = dataclasses.replace(first, profile_id="p2", created_at=LATER, secret_hash="h")
    assert await store.add_profile(again) == first, "the first one, unchanged"

    assert await store.find_profile("app", ANON, "x1") == first
    assert await store.get_profile("p1") == first
    assert await store.get_profile("p2") is None
    assert await store.find_profile("app", UNIVERSAL, "x1") is None


async def test_concurrent_adds_of_one_identity_make_one_profile(store: Store) -> None:
    added = await asyncio.gather(*(store.add_profile(profile(f"p{n}")) for n in range(10)))

    assert len({p.profile_id for p in added}) == 1
    [kept] = [p for n in range(10) if (p := await store.get_profile(f"p{n}")) is not None]
    assert added == [kept] * 10


async def test_the_same_external_id_in_another_app_or_of_another_kind_is_another_profile(
    store: Store,
) -> None:
    profiles = [
        profile("p1"),
        profile("p2", app_id="other-app"),
        Profile("p3", "app", UNIVERSAL, "x1", NOW, secret_hash="scrypt$00$00"),
    ]
    for p in profiles:
        assert await store.add_profile(p) == p

    assert await store.find_profile("other-app", ANON, "x1") == profiles[1]
    assert await store.find_profile("app", UNIVERSAL, "x1") == profiles[2]
    assert await store.find_profile("app", ANON, "x1") == profiles[0]


async def test_a_session_reads_back_as_opened(store: Store) -> None:
    client = Session("s1", "app", FAR, profile_id="p1")
    server = Session("s2", "app", FAR, server_name="game-server")
    await store.open_session(client)
    await store.open_session(server)

    assert await store.get_session("s1") == client
    assert await store.get_session("s2") == server
    assert await store.get_session("nobody") is None


async def test_keeping_a_session_moves_its_expiry_and_keeps_the_latest_packets_answer(
    store: Store,
) -> None:
    await store.open_session(Session("s1", "app", FAR, profile_id="p1"))

    await store.keep_session("s1", FAR + timedelta(minutes=10), 1, "answer-1")
    assert await store.get_session("s1") == Session(
        "s1", "app", FAR + timedelta(minutes=10), "p1", None, 1, "answer-1"
    )
    await store.keep_session("s1", FAR + timedelta(minutes=20), 3, "answer-3")
    await store.keep_session("s1", FAR + timedelta(minutes=30), 2, "answer-2")
    kept = await store.get_session("s1")
    assert kept is not None
    assert (kept.last_packet_id, kept.last_answer) == (3, "answer-3"), "not an earlier packet's"
    assert kept.expires_at == FAR + timedelta(minutes=30), "any packet moves the expiry on"

    await store.keep_session("s1", FAR + timedelta(minutes=5), 4, "answer-4")
    kept = await store.get_session("s1")
    assert kept is not None
    assert (kept.last_packet_id, kept.last_answer) == (4, "answer-4")
    assert kept.expires_at == FAR + timedelta(minutes=30), "never moved back"

    await store.keep_session("nobody", FAR, 1, "answer")
    assert await store.get_session("nobody") is None


async def test_concurrent_keeps_of_a_session_leave_the_latest_packets_answer(
    store: Store,
) -> None:
    await store.open_session(Session("s1", "app", FAR, profile_id="p1"))

    await asyncio.gather(
        *(store.keep_session("s1", FAR + timedelta(seconds=n), n, f"a{n}") for n in range(20))
    )

    kept = await store.get_session("s1")
    assert kept is not None
    assert (kept.last_packet_id, kept.last_answer, kept.expires_at) == (
        19,
        "a19",
        FAR + timedelta(seconds=19),
    )


async def test_purging_sessions_deletes_the_expired_ones_only(store: Store) -> None:
    await store.open_session(Session("s1", "app", FAR + timedelta(minutes=1), profile_id="p1"))
    await store.open_session(Session("s2", "app", FAR + timedelta(hours=1), server_name="srv"))

    assert await store.purge_sessions(FAR) == 0
    assert await store.purge_sessions(FAR + timedelta(minutes=1)) == 1
    assert await store.get_session("s1") is None
    assert await store.get_session("s2") is not None
    assert await store.purge_sessions(FAR + timedelta(days=1)) == 1
    assert await store.get_session("s2") is None
