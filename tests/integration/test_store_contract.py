"""The store contract: what the services rely on, proven against every store.

Conditional transitions, events written with them, uniqueness, the
redemption gate, replies and the outbox, under concurrency. Each test runs
on MongoDB and on the embedded SQLite store.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime

import pytest

from shared.domain import model
from shared.domain.model import (
    Campaign,
    Claim,
    Code,
    CodeUseType,
    Redemption,
    RedemptionStatus,
    ReplyTo,
)
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState
from shared.ports import Store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


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
        return await store.apply("gems", "ABC123", [change])

    results = await asyncio.gather(*(claim(u) for u in range(200)))
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    stored = await store.get_code("gems", "ABC123")
    assert stored is not None and stored.code_state is CodeState.IN_PROGRESS
    assert stored.redeemed_by_user_id == winners[0].redeemed_by_user_id
    pending = await store.pending_events(limit=10)
    assert [[p.event.redemption_id for p in item.events] for item in pending] == [
        [winners[0].redemption_id]
    ]


async def test_a_transition_from_the_wrong_state_changes_nothing(store: Store) -> None:
    await seed(store, state=CodeState.INACTIVE)
    change = model.claim(Claim("r1", "u1"), now=NOW, new_id=new_id)
    assert await store.apply("gems", "ABC123", [change]) is None
    stored = await store.get_code("gems", "ABC123")
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
    code = await store.apply("gems", "ABC123", changes)
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
    stored = await store.get_code("gems", "ABC123")
    assert stored is not None
    assert [(h.action.value, h.to_state) for h in stored.history] == [
        ("redeem", CodeState.IN_PROGRESS),
        ("succeed", CodeState.REDEEMED),
    ]


async def test_marking_relayed_keeps_events_added_since(store: Store) -> None:
    await seed(store)
    claim = Claim("r1", "u1")
    await store.apply("gems", "ABC123", [model.claim(claim, now=NOW, new_id=new_id)])
    seen = await store.pending_events(limit=10)
    await store.apply(
        "gems", "ABC123", [model.succeed(claim, None, now=NOW, new_id=new_id)], redemption_id="r1"
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


async def test_custom_info_updates_only_at_the_expected_version(store: Store) -> None:
    await seed(store)
    updated = await store.set_custom_code_info("gems", "ABC123", 1, {"b": 2}, "op")
    assert updated is not None and (updated.version, updated.custom_code_info) == (2, {"b": 2})
    assert await store.set_custom_code_info("gems", "ABC123", 1, {"c": 3}, "op") is None


async def test_a_claim_for_another_redemption_or_version_changes_nothing(store: Store) -> None:
    await seed(store)
    claim = Claim("r1", "u1")
    await store.apply("gems", "ABC123", [model.claim(claim, now=NOW, new_id=new_id)])
    other = model.succeed(Claim("r2", "u2"), None, now=NOW, new_id=new_id)
    assert await store.apply("gems", "ABC123", [other], redemption_id="r2") is None
    stale = model.succeed(claim, None, now=NOW, new_id=new_id)
    assert await store.apply("gems", "ABC123", [stale], version=1) is None
    done = await store.apply("gems", "ABC123", [stale], redemption_id="r1", version=2)
    assert done is not None and done.code_state is CodeState.REDEEMED


async def test_codes_read_back_as_written(store: Store) -> None:
    info = {"reward": {"item": "gems", "quantity": 5, "tags": ["a", None, 1.5]}}
    await store.create_campaign(Campaign("a", CodeUseType.SINGLE, NOW, NOW, handler="h"))
    await store.create_campaign(Campaign("b", CodeUseType.SINGLE, NOW, NOW))
    written = Code("c1", "a", "SAME-1", CodeState.INACTIVE, NOW, NOW, custom_code_info=info)
    await store.add_code(written)
    await store.add_code(Code("c2", "b", "same 1", CodeState.AVAILABLE, NOW, NOW))
    assert await store.get_code("a", "SAME1") == written
    assert {c.code_type for c in await store.find_codes("SAME1", limit=5)} == {"a", "b"}
    assert await store.get_code("a", "NOPE") is None
    campaign = await store.get_campaign("a")
    assert campaign is not None and campaign.handler == "h" and campaign.created_at == NOW
    assert [c.code_type for c in await store.list_campaigns(skip=1, limit=5)] == ["b"]
    assert await store.count_campaigns() == 2


async def test_a_users_redeemed_codes_are_those_in_state_redeemed(store: Store) -> None:
    await seed(store)
    await store.add_code(Code("code-2", "gems", "OTHER", CodeState.AVAILABLE, NOW, NOW))
    claim = Claim("r1", "u1")
    redeem = [
        model.claim(claim, now=NOW, new_id=new_id),
        model.succeed(claim, None, now=NOW, new_id=new_id),
    ]
    await store.apply("gems", "ABC123", redeem)
    await store.apply("gems", "OTHER", [model.claim(Claim("r2", "u1"), now=NOW, new_id=new_id)])
    assert [c.scan_code for c in await store.redeemed_codes("u1", None)] == ["ABC-123"]
    assert await store.redeemed_codes("u1", "elsewhere") == []
    assert await store.redeemed_codes("u2", None) == []
