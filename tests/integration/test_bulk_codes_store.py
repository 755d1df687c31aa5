"""Codes added and read in bulk are the codes written, on every store: every field, any
batch (of one, of codes alike, of codes that differ in everything), and a code already
there or twice in one batch is not added again."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from shared.domain.model import AttemptState, Campaign, Code, CodeRef, CodeUseType, HistoryEntry
from shared.domain.states import Action, CodeState
from shared.ports import Store

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
EVERYTHING = Code(
    "c-full", "gems", "FULL-1", CodeState.REDEEMED, NOW, NOW + timedelta(seconds=1), version=4,
    custom_code_info={"tier": "gold", "a.b": {"$c": [1, 2.5, None]}, "": "é"},
    custom_redemption_info={"x": {"y": True}}, redeemed_by_user_id="u1", redemption_id="r1",
    invalidation_reason="why", activated_at=NOW, redeemed_at=NOW, invalidated_at=NOW,
    attempt=2, attempted_at=NOW, error_code="E", error_msg="oops",
    attempt_state=AttemptState.SUCCEEDED, response={"ok": 1}, deadline_at=NOW,
    next_poll_at=NOW, retry_at=NOW, job_id="job-1",
    history=(HistoryEntry(NOW, Action.REDEEM, CodeState.AVAILABLE, CodeState.REDEEMED, "u1"),),
)  # fmt: skip


def by_id(codes: list[Code]) -> list[Code]:
    """`codes` as a campaign's are read in bulk: by id, without their history."""
    return sorted(
        (dataclasses.replace(code, history=()) for code in codes),
        key=lambda code: code.redemption_code_id,
    )


async def everything_of(store: Store, job_id: str | None = None) -> list[Code]:
    codes = [code async for batch in store.codes_of("gems", job_id=job_id) for code in batch]
    return [dataclasses.replace(code, history=()) for code in codes]


async def test_codes_added_in_bulk_read_back_as_written(any_store: Store) -> None:
    store = any_store
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    alike = [
        Code(f"c{n}", "gems", f"AL-{n}", CodeState.INACTIVE, NOW, NOW, job_id="job-1")
        for n in range(5)
    ]
    other = dataclasses.replace(
        alike[0], redemption_code_id="c9", scan_code="•••• masked", key="h1:abc", job_id=None
    )
    assert await store.add_codes([EVERYTHING]) == [True]
    assert await store.add_codes([*alike, other]) == [True] * 6
    assert await store.add_codes([]) == []

    assert await store.get_code(CodeRef("gems", "FULL1")) == EVERYTHING
    assert await store.get_code(CodeRef("gems", "h1:abc")) == other
    assert await everything_of(store) == by_id([EVERYTHING, *alike, other])
    assert await everything_of(store, job_id="job-1") == by_id([EVERYTHING, *alike])


async def test_a_batch_adds_each_code_once_in_the_order_given(any_store: Store) -> None:
    store = any_store
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    first = Code("c1", "gems", "DUP-1", CodeState.AVAILABLE, NOW, NOW, activated_at=NOW)
    twice = dataclasses.replace(first, redemption_code_id="c2", scan_code="dup 1")
    fresh = Code("c3", "gems", "NEW-1", CodeState.INACTIVE, NOW, NOW)
    assert await store.add_codes([first, twice, fresh]) == [True, False, True]
    assert await store.add_codes([fresh, dataclasses.replace(fresh, redemption_code_id="c4")]) == [
        False,
        False,
    ]
    assert await everything_of(store) == by_id([first, fresh])
