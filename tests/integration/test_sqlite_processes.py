"""The embedded store shared by several processes, as several workers share it."""

from __future__ import annotations

import asyncio
import multiprocessing
from datetime import UTC, datetime
from pathlib import Path

from shared.adapters.sqlite import SqliteStore
from shared.domain import model
from shared.domain.model import Campaign, Claim, Code, CodeRef, CodeUseType
from shared.domain.states import CodeState

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PROCESSES = 4
CLAIMS_EACH = 50


def claim_from_a_process(path: str, worker: int) -> int:
    """Race CLAIMS_EACH claims from this process; how many won."""

    async def race() -> int:
        store = SqliteStore(Path(path))
        try:

            async def claim(n: int) -> bool:
                claim = Claim(f"r{worker}-{n}", f"u{worker}-{n}")
                change = model.claim(claim, now=NOW, new_id=lambda: f"e{worker}-{n}")
                return await store.apply(CodeRef("gems", "CODE"), [change]) is not None

            return sum(await asyncio.gather(*(claim(n) for n in range(CLAIMS_EACH))))
        finally:
            await store.close()

    return asyncio.run(race())


async def test_processes_racing_for_one_code_have_exactly_one_winner(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    store = SqliteStore(path)
    await store.prepare()
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    await store.add_code(Code("c1", "gems", "CODE", CodeState.AVAILABLE, NOW, NOW))
    context = multiprocessing.get_context("spawn")
    with context.Pool(PROCESSES) as pool:
        wins = await asyncio.to_thread(
            pool.starmap, claim_from_a_process, [(str(path), w) for w in range(PROCESSES)]
        )
    assert sum(wins) == 1
    [pending] = await store.pending_events(limit=10)
    assert len(pending.events) == 1
    code = await store.get_code(CodeRef("gems", "CODE"))
    assert code is not None and code.code_state is CodeState.IN_PROGRESS
    await store.close()


async def test_every_commit_is_on_disk_before_it_returns(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.prepare()
    try:
        modes = await store._run(
            lambda conn: (
                conn.execute("PRAGMA journal_mode").fetchone()[0],
                conn.execute("PRAGMA synchronous").fetchone()[0],
            )
        )
    finally:
        await store.close()
    assert modes == ("wal", 2)  # 2: FULL, the WAL synced at every commit
