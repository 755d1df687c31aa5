"""The cost of durable commits on the embedded store: `synchronous = FULL` against `NORMAL`.

The store commits with FULL, so that a job acknowledged after its commit is
on disk should the power go. This claims and redeems `--codes` codes (one
commit each, as a worker does for a campaign without a handler) once with
each setting, in turns, on two files in the same directory, and prints
commits per second and the ratio, measured in one run.

    .venv/bin/python -m bench.durability [--codes 2000] [--rounds 3] [--dir /path]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from shared.adapters.sqlite import SqliteStore
from shared.clock import new_id, utcnow
from shared.domain import model
from shared.domain.model import Campaign, Claim, Code, CodeRef, CodeUseType
from shared.domain.states import CodeState


async def commits_per_second(path: Path, synchronous: str, codes: int) -> float:
    store = SqliteStore(path)
    await store.prepare()
    await store._run(lambda conn: conn.execute(f"PRAGMA synchronous = {synchronous}"))
    now = utcnow()
    tag = new_id()[:8]
    await store.create_campaign(Campaign(tag, CodeUseType.SINGLE, now, now))
    await store.add_codes(
        [Code(f"{tag}-{n}", tag, f"D{n:06d}", CodeState.AVAILABLE, now, now) for n in range(codes)]
    )
    started = time.perf_counter()
    for n in range(codes):
        claim = Claim(f"{tag}-r{n}", f"u{n}")
        changes = [
            model.claim(claim, now=now, new_id=new_id),
            model.succeed(claim, None, now=now, new_id=new_id),
        ]
        await store.apply(CodeRef(tag, f"D{n:06d}"), changes)
    elapsed = time.perf_counter() - started
    await store.close()
    return codes / elapsed


async def main(codes: int, rounds: int, where: Path) -> None:
    best = {"FULL": 0.0, "NORMAL": 0.0}
    for _ in range(rounds):
        for setting in best:
            rate = await commits_per_second(where / f"{setting}.sqlite3", setting, codes)
            best[setting] = max(best[setting], rate)
    for setting, rate in best.items():
        print(f"synchronous = {setting:<6} {rate:8.0f} commits/s")
    print(f"FULL / NORMAL: {best['FULL'] / best['NORMAL']:.2f} (best of {rounds} rounds each)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where the files go")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        asyncio.run(main(args.codes, args.rounds, Path(tmp)))
