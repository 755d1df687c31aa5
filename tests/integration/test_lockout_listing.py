"""Listing lockouts over each store: however many windows with room left lie between
them, every lockout is listed, page after page, and a page says whether another follows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.domain.access import UNLIMITED, Grant
from shared.domain.throttling import FailureLimits, FailureWindow, Limit
from shared.ports import Store
from shared.service.campaign_cache import CampaignCache
from shared.service.failure_budget import FailureBudget

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
THREE = Limit(3, timedelta(minutes=15))


async def failed(store: Store, scope: str, failures: int) -> None:
    """`failures` counted attempts in the scope's window (3 lock it out)."""
    for n in range(failures):

        def admit(window: FailureWindow, attempt: str = f"{scope}-{n}") -> FailureWindow:
            return window.admit(attempt, NOW, THREE)

        await store.change_failure_window(scope, THREE, admit)


def budget(store: Store) -> FailureBudget:
    return FailureBudget(store, FailureLimits(), CampaignCache(store, 0), lambda: NOW)


async def pages(
    listing: FailureBudget, limit: int, grant: Grant = UNLIMITED, **options: int
) -> list[tuple[list[str], str | None]]:
    """Each page's scopes and its `after`, paging on until no page follows."""
    seen: list[tuple[list[str], str | None]] = []
    after = None
    while True:
        found, after = await listing.lockouts(grant, after=after, limit=limit, **options)
        seen.append(([lockout.scope for lockout in found], after))
        if after is None:
            return seen


async def test_a_page_reads_past_windows_with_room_left_until_it_finds_lockouts(
    any_store: Store,
) -> None:
    for user in "abcde":
        await failed(any_store, f"user:{user}", 1)
    await failed(any_store, "user:z", 3)

    assert await pages(budget(any_store), limit=3) == [(["user:z"], None)]


async def test_a_full_page_names_its_last_scope_and_the_next_starts_after_it(
    any_store: Store,
) -> None:
    for user, failures in zip("abcdefg", (1, 3, 1, 3, 1, 3, 1), strict=True):
        await failed(any_store, f"user:{user}", failures)

    assert await pages(budget(any_store), limit=2) == [
        (["user:b", "user:d"], "user:d"),
        (["user:f"], None),
    ]
    # The last lockout is the last window: nothing can follow it.
    await any_store.clear_failure_window("user:g")
    assert await pages(budget(any_store), limit=1) == [
        (["user:b"], "user:b"),
        (["user:d"], "user:d"),
        (["user:f"], None),
    ]


async def test_a_page_that_read_its_share_of_windows_ends_there_and_names_where(
    any_store: Store,
) -> None:
    for user in "abcde":
        await failed(any_store, f"user:{user}", 1)
    await failed(any_store, "user:z", 3)

    assert await pages(budget(any_store), limit=3, scan=2) == [
        ([], "user:b"),
        ([], "user:d"),
        (["user:z"], "user:z"),
        ([], None),
    ]


async def test_a_key_limited_to_campaigns_pages_through_their_lockouts(any_store: Store) -> None:
    for name, failures in (("a", 3), ("b", 1), ("c", 3), ("d", 3)):
        await failed(any_store, f"campaign:{name}", failures)
    limited = Grant(frozenset({"admin"}), campaigns=frozenset({"a", "b", "c"}))

    assert await pages(budget(any_store), limit=1, grant=limited) == [
        (["campaign:a"], "campaign:a"),
        (["campaign:c"], None),
    ]
