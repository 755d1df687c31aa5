"""Bulk operations at retail scale: generate, import, export and count 1,000,000 codes.

Prints rows per second and peak memory (RSS) for each, on the embedded store,
and on MongoDB too when REDEEM_BENCH_MONGODB_URL is given (a SecantusDB
surrogate there is named as such: its figures are the surrogate's, not
MongoDB's). Each phase runs in a fresh process, so that its peak memory is its
own. Import and export run as the intake runs them (`Bulk`), generation as a
worker runs a job.

    .venv/bin/python -m bench.bulk [--rows 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from services.intake.bulk import Bulk
from shared.adapters.mongodb import MongoStore
from shared.adapters.sqlite import SqliteStore
from shared.clock import new_id, utcnow
from shared.domain.codekeys import PLAIN
from shared.domain.generation import Format
from shared.domain.model import Campaign, CodeUseType, Job
from shared.domain.states import CodeState
from shared.ports import Store
from shared.service import generate_codes

NOW = datetime.now(UTC)
Phase = Callable[[Store, int, Path], Coroutine[Any, Any, None]]


def open_store(where: str) -> Store:
    if where.startswith("mongodb"):
        db = os.environ.get("REDEEM_BENCH_DB", "bench")
        return MongoStore.connect(where, db)
    return SqliteStore(Path(where))


async def generate(store: Store, rows: int, _: Path) -> None:
    job = Job(
        new_id(), "gen", rows, CodeState.INACTIVE, "FiveByFive", {"includeCheck": True}, NOW, NOW
    )
    await store.create_job(job)
    finished, _codes = await generate_codes.generate(store, job, utcnow, new_id)
    assert finished.done == rows


async def import_file(store: Store, _: int, file: Path) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        with file.open("rb") as source:
            while chunk := source.read(256 * 1024):
                yield chunk

    report = await Bulk(store, utcnow, new_id, PLAIN).import_codes("imp", "csv", chunks())
    assert report.added + report.unchanged == report.rows


async def export(store: Store, rows: int, file: Path) -> None:
    lines = 0
    with file.with_suffix(".out").open("wb") as out:
        async for chunk in await Bulk(store, utcnow, new_id, PLAIN).export("imp", "csv"):
            out.write(chunk)
            lines += chunk.count(b"\n")
    assert lines == rows + 1  # and the header


async def inventory(store: Store, rows: int, _: Path) -> None:
    counts = await store.inventory("imp", shared=False)
    assert sum(counts.values()) == rows


PHASES: dict[str, Phase] = {
    "generate": generate,
    "import": import_file,
    "export": export,
    "inventory": inventory,
}


def run_phase(where: str, name: str, rows: int, file: str) -> tuple[float, float]:
    """In a fresh process: (seconds, peak RSS in MB)."""

    async def main() -> float:
        store = open_store(where)
        await store.prepare()
        started = time.perf_counter()
        await PHASES[name](store, rows, Path(file))
        elapsed = time.perf_counter() - started
        await store.close()
        return elapsed

    elapsed = asyncio.run(main())
    return elapsed, peak_rss_mb()


def peak_rss_mb() -> float:
    """This process's own peak resident memory (VmHWM: unlike ru_maxrss, it does not
    include the parent's memory at the fork that started this process)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_inventory(path: Path, rows: int) -> None:
    fmt = Format.named("FiveByFive", {})
    with path.open("w") as out:
        out.write("scanCode,codeState\n")
        for start in range(0, rows, 100_000):
            codes = fmt.generate(min(100_000, rows - start), secrets.token_bytes)
            out.writelines(f"{code},Available\n" for code in codes)


async def seed(where: str) -> None:
    store = open_store(where)
    await store.prepare()
    for name in ("gen", "imp"):
        await store.create_campaign(Campaign(name, CodeUseType.SINGLE, NOW, NOW))
    await store.close()


def generation_rate(rows: int) -> float:
    started = time.perf_counter()
    Format.named("FiveByFive", {"includeCheck": True}).generate(rows, secrets.token_bytes)
    return rows / (time.perf_counter() - started)


def bench(label: str, where: str, rows: int, work: Path) -> None:
    asyncio.run(seed(where))
    file = work / f"inventory-{label}.csv"
    write_inventory(file, rows)
    context = multiprocessing.get_context("spawn")
    for name in PHASES:
        with context.Pool(1) as pool:
            elapsed, peak_mb = pool.apply(run_phase, (where, name, rows, str(file)))
        print(
            f"{label:8} {name:10} {rows / elapsed:>12,.0f} rows/s {elapsed:>8.1f} s"
            f" {peak_mb:>8.0f} MB peak"
        )


def mongodb_label(url: str) -> str:
    """`mongodb`, or `surrogate` for a SecantusDB server (said once, before its figures)."""
    with MongoClient[dict[str, Any]](url, serverSelectionTimeoutMS=10_000) as client:
        build = client.admin.command("buildInfo")
    if "secantusVersion" not in build:
        return "mongodb"
    print(
        f"surrogate: SecantusDB {build['secantusVersion']} (a MongoDB wire-protocol surrogate,"
        " test-only), not MongoDB: these figures are the surrogate's"
    )
    return "surrogate"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    print(f"generation alone: {generation_rate(rows):,.0f} codes/s (FiveByFive with check)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bench("sqlite", str(work / "bench.sqlite3"), rows, work)
        mongo = os.environ.get("REDEEM_BENCH_MONGODB_URL")
        if mongo:
            os.environ["REDEEM_BENCH_DB"] = f"bench_{uuid.uuid4().hex[:8]}"
            bench(mongodb_label(mongo), mongo, rows, work)
        else:
            print("mongodb: set REDEEM_BENCH_MONGODB_URL to measure it too")


if __name__ == "__main__":
    main()
