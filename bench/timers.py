"""Timer accuracy: how late retries and timeouts fire, with 10,000 timers pending.

Seeds half the timers as failed attempts waiting for their retry and half as
attempts waiting on a silent partner until their deadline, all due within
the next `--spread` seconds, then runs `--workers` timer loops (as worker
processes run them, each on its own store connection) until every timer
has fired. Prints how late each kind
fired after its due time (p50, p95, p99, max) and timers fired per second.
The acceptance: timeouts within 1 s of the deadline, retries within 10% of
their backoff (or 1 s).

    .venv/bin/python -m bench.timers [--timers 10000] [--spread 10] [--workers 2]

The embedded store by default; REDEEM_BENCH_MONGODB_URL selects MongoDB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from services.worker.bootstrap import bootstrap
from shared.adapters.mongodb import MongoStore
from shared.adapters.sqlite import SqliteStore
from shared.clock import new_id, utcnow
from shared.domain import model
from shared.domain.model import Campaign, Claim, Code, CodeRef, CodeUseType
from shared.domain.states import Action, CodeState
from shared.ports import Store


async def answer(request: Mapping[str, Any]) -> Mapping[str, Any]:
    """A partner that succeeds at once (retries call it; timeouts never do)."""
    return {"success": True, "complete": True}


async def seed(store: Store, timers: int, spread_s: float) -> datetime:
    now = utcnow()
    campaign = Campaign(
        "timers", CodeUseType.SINGLE, now, now, handler="bench", is_async=True, max_retries=1
    )
    await store.create_campaign(campaign)
    await store.add_codes(
        [Code(f"c{n}", "timers", f"T{n:06d}", CodeState.AVAILABLE, now, now) for n in range(timers)]
    )
    start = utcnow() + timedelta(seconds=2)
    for n in range(timers):
        due = start + timedelta(seconds=spread_s * n / timers)
        claim = Claim(f"r{n}", f"u{n}")
        fields: dict[str, Any] = {"timer_at": due, "attempt": n % 2}
        changes = [model.claim(claim, now=now, new_id=new_id, attempt_fields=fields)]
        if n % 2 == 0:  # attempt 0 failed: its retry is due at `due`
            failed = {"retry_at": due, "timer_at": due, "deadline_at": None}
            changes.append(
                model.fail(claim, "E", "e", now=now, new_id=new_id, attempt_fields=failed)
            )
        else:  # the last attempt (1), whose deadline is `due`
            fields["deadline_at"] = due
        await store.apply(CodeRef("timers", f"T{n:06d}"), changes)
    return start + timedelta(seconds=spread_s)


def lateness(
    codes: list[Code], action: Action, due_of: dict[str, datetime], running_from: datetime
) -> list[float]:
    """Seconds from when each timer was due (or the loops started, if later) to its firing."""
    late = []
    for code in codes:
        fired = [h.at for h in code.history if h.action is action]
        if fired and code.redemption_code_id in due_of:
            due = max(due_of[code.redemption_code_id], running_from)
            late.append((fired[0] - due).total_seconds())
    return late


def report(kind: str, late: list[float]) -> None:
    if not late:
        print(f"{kind:>9}: none fired")
        return
    q = statistics.quantiles(late, n=100)
    print(
        f"{kind:>9}: {len(late):6d} fired, late by p50 {q[49] * 1000:6.0f} ms, "
        f"p95 {q[94] * 1000:6.0f} ms, p99 {q[98] * 1000:6.0f} ms, max {max(late) * 1000:6.0f} ms"
    )


async def run(open_store: Callable[[], Store], timers: int, spread_s: float, workers: int) -> None:
    """Each timer loop on its own store connection, as in its own worker process."""
    stores = [open_store() for _ in range(workers + 1)]
    try:
        await measure(stores[0], stores[1:], timers, spread_s)
    finally:
        for store in stores:
            await store.close()


async def measure(store: Store, workers: list[Store], timers: int, spread_s: float) -> None:
    await store.prepare()
    last_due = await seed(store, timers, spread_s)
    dues: dict[str, datetime] = {}
    async for batch in store.codes_of("timers"):
        for code in batch:
            if code.timer_at is not None:
                dues[code.redemption_code_id] = code.timer_at
    loops = [
        bootstrap(own, {"bench": answer}, lease_s=30, timer_concurrency=256).timers
        for own in workers
    ]
    began, running_from = time.perf_counter(), utcnow()
    for loop in loops:
        await loop.start()
    await asyncio.sleep(max(0.0, (last_due - utcnow()).total_seconds()))
    while True:  # until every timer, and every retry a timeout started, has fired
        if not await pending(store):
            break
        await asyncio.sleep(0.2)
    elapsed = time.perf_counter() - began
    for loop in loops:
        await loop.stop()
    codes = [code async for batch in store.codes_of("timers") for code in batch]
    print(f"{timers} timers due over {spread_s:g} s, {len(loops)} timer loops, {elapsed:.1f} s")
    retries = {key: due for key, due in dues.items() if int(key[1:]) % 2 == 0}
    deadlines = {key: due for key, due in dues.items() if int(key[1:]) % 2 == 1}
    overdue = sum(due < running_from for due in dues.values())
    print(f"{overdue} were due before the loops started (seeding took that long)")
    report("timeouts", lateness(codes, Action.FAIL, deadlines, running_from))
    report("retries", lateness(codes, Action.RETRY, retries, running_from))
    print(f"throughput: {timers / elapsed:,.0f} timers/s (including the spread)")


async def pending(store: Store) -> bool:
    """Whether any timer still waits (a retry or a deadline not yet acted on)."""
    async for batch in store.codes_of("timers"):
        if any(c.code_state is CodeState.IN_PROGRESS or (c.retry_at is not None) for c in batch):
            return True
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timers", type=int, default=10_000)
    parser.add_argument(
        "--spread", type=float, default=60.0, help="seconds the timers fall due over"
    )
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    mongo = os.environ.get("REDEEM_BENCH_MONGODB_URL")
    db = f"bench_timers_{int(time.time())}"
    with tempfile.TemporaryDirectory() as tmp:

        def open_store() -> Store:
            if mongo:
                return MongoStore.connect(mongo, db)
            return SqliteStore(Path(tmp) / "timers.sqlite3")

        print(f"store: {'MongoDB' if mongo else 'embedded SQLite'}; started {datetime.now(UTC)}")
        asyncio.run(run(open_store, args.timers, args.spread, args.workers))


if __name__ == "__main__":
    main()
