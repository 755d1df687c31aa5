"""The MongoDB store: conditional transitions, outbox, uniqueness, under concurrency."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime

import pytest

from shared.adapters.mongo_store import MongoStore
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

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ids = (f"e{n}" for n in itertools.count())


def new_id() -> str:
    return next(ids)


async def seed(
    store: MongoStore, scan: str = "ABC-123", state: CodeState = CodeState.AVAILABLE
) -> None:
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    await store.add_code(Code("code-1", "gems", scan, state, NOW, NOW, custom_code_info={"a": 1}))


async def test_two_hundred_concurrent_claims_have_exactly_one_winner(store: MongoStore) -> None:
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


async def test_a_transition_from_the_wrong_state_changes_nothing(store: MongoStore) -> None:
    await seed(store, state=CodeState.INACTIVE)
    change = model.claim(Claim("r1", "u1"), now=NOW, new_id=new_id)
    assert await store.apply("gems", "ABC123", [change]) is None
    stored = await store.get_code("gems", "ABC123")
    assert stored is not None
    assert (stored.code_state, stored.version, stored.history) == (CodeState.INACTIVE, 1, ())
    assert await store.pending_events(limit=10) == []


async def test_each_event_carries_the_code_as_of_that_event(store: MongoStore) -> None:
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


async def test_marking_relayed_keeps_events_added_since(store: MongoStore) -> None:
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


async def test_a_scan_code_is_unique_per_campaign_in_any_spelling(store: MongoStore) -> None:
    await seed(store, scan="ABC-123")
    with pytest.raises(DomainError) as refused:
        await store.add_code(Code("code-2", "gems", "abc 123", CodeState.AVAILABLE, NOW, NOW))
    assert refused.value.reason is ReasonCode.SCAN_CODE_EXISTS


async def test_a_campaign_is_created_once(store: MongoStore) -> None:
    await seed(store)
    with pytest.raises(DomainError) as refused:
        await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    assert refused.value.reason is ReasonCode.CODE_TYPE_EXISTS


async def test_a_redemption_opens_once_and_its_first_outcome_stands(store: MongoStore) -> None:
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


async def test_custom_info_updates_only_at_the_expected_version(store: MongoStore) -> None:
    await seed(store)
    updated = await store.set_custom_code_info("gems", "ABC123", 1, {"b": 2}, "op")
    assert updated is not None and (updated.version, updated.custom_code_info) == (2, {"b": 2})
    assert await store.set_custom_code_info("gems", "ABC123", 1, {"c": 3}, "op") is None
