"""Uniform refusals, timed: whether the answer time tells a guesser which refusal it got.

Starts the system (intake, workers, results) with uniform refusals on
(`REDEEM_UNIFORM_REFUSALS=true`, or with `--uniform-by campaign` the campaign's
`uniformRefusals` alone) and no failure limit for users (each request has a user id
of its own too, so no throttling interferes). A campaign holds `--pool` codes of each
kind a guess can meet: Inactive, invalidated, and redeemed by another user; unknown
codes are random codes of the same shape outside the campaign. Then `--requests` HTTP
redemptions with `?wait=`, the four kinds in equal numbers interleaved at random
(`--seed`), go out `--concurrency` at a time, after `--warmup` requests that are not
counted. With `--unnamed`, each kind is sent without `codeType` too (the worker then
finds the code in whatever campaign holds it): eight kinds, in equal numbers.

It prints, for each kind, the count, the answers (status/reasonCode: all 404/40395
when the refusals are uniform), the real reason the service kept for operators, and
the median and p90 answer time; then, for each pair of kinds that name a campaign
alike (both a `codeType`, or both none: a guesser compares a guess with others sent
the same way), the difference of their medians with a Mann-Whitney U test, and for
the pair whose medians differ most a bootstrap 95% interval of that difference.
Exit 1 when the answers tell such kinds apart (any kind answered otherwise than the
others sent the same way).

    .venv/bin/python -m bench.refusal_timing [--requests 4000] [--store embedded|mongodb]
        [--workers 2] [--concurrency 4] [--pool 50] [--warmup 200] [--seed 1]
        [--unnamed] [--uniform-by service|campaign]

MongoDB is the one the tests would use (REDEEM_TEST_MONGODB_URL, else a local
SecantusDB surrogate); RabbitMQ the local broker, on a virtual host of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.support import servers
from bench.support.processes import System, system_env

ADMIN, REDEEM = "bench-admin", "bench-redeem"
KEYS = f"{ADMIN}=admin;{REDEEM}=redeem"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
AS_REDEEMER = {"Authorization": f"Bearer {REDEEM}"}
CAMPAIGN = "timing"
KINDS = ("unknown", "inactive", "invalidated", "redeemed by another")
UNNAMED = ", no codeType"  # a kind sent without codeType: "unknown, no codeType"
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
BOOTSTRAP_ROUNDS = 2000
console = Console() if sys.stdout.isatty() else Console(width=160)


@dataclass(frozen=True)
class Answer:
    kind: str
    took_s: float
    status: int
    reason: int | None
    redemption_id: str | None

    @property
    def label(self) -> str:
        return f"{self.status}/{self.reason}" if self.reason else str(self.status)


def kinds_sent(args: argparse.Namespace) -> list[tuple[str, ...]]:
    """The kinds sent, in groups that name a campaign alike: with a codeType, and, with
    `--unnamed`, without one."""
    if not args.unnamed:
        return [KINDS]
    return [KINDS, tuple(kind + UNNAMED for kind in KINDS)]


def scan_code(rng: random.Random) -> str:
    """A code shaped like every code of the campaign: `TIME-XXXX-XXXX-XXXX`."""
    groups = ("".join(rng.choices(ALPHABET, k=4)) for _ in range(3))
    return "TIME-" + "-".join(groups)


def draw_codes(rng: random.Random, pool: int) -> dict[str, list[str]]:
    """`pool` distinct codes of each kind (the unknown ones never stored)."""
    codes = set[str]()
    while len(codes) < pool * len(KINDS):
        codes.add(scan_code(rng))
    drawn = sorted(codes)
    rng.shuffle(drawn)
    return {kind: drawn[n * pool : (n + 1) * pool] for n, kind in enumerate(KINDS)}


async def call(http: httpx.AsyncClient, method: str, path: str, **kw: Any) -> Any:
    answer = await http.request(method, path, headers=AS_ADMIN, **kw)
    if answer.status_code >= 300:
        raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text}")
    return answer.json()


async def prepare(
    http: httpx.AsyncClient, codes: dict[str, list[str]], args: argparse.Namespace
) -> None:
    """The campaign, with the Inactive, invalidated and redeemed codes of `codes`; its
    own `uniformRefusals` with `--uniform-by campaign`."""
    campaign: dict[str, Any] = {"codeType": CAMPAIGN}
    if args.uniform_by == "campaign":
        campaign["uniformRefusals"] = True
    await call(http, "POST", "/v1/campaigns", json=campaign)
    stored = [
        {"scanCode": scan, "codeState": "Inactive" if kind == "inactive" else "Available"}
        for kind in KINDS[1:]
        for scan in codes[kind]
    ]
    lines = "\n".join(json.dumps(row) for row in stored) + "\n"
    report = await call(
        http,
        "POST",
        f"/v1/campaigns/{CAMPAIGN}/codes/import",
        params={"format": "ndjson"},
        content=lines.encode(),
    )
    if report["added"] != len(stored):
        raise RuntimeError(f"import: {report}")
    for scan in codes["invalidated"]:
        await call(http, "POST", f"/v1/campaigns/{CAMPAIGN}/codes/{scan}/invalidate")
    for n, scan in enumerate(codes["redeemed by another"]):
        answer = await redeem(http, f"owner-{n}", scan, "owner", wait_s=30)
        if answer.status != 200:
            raise RuntimeError(f"could not redeem {scan} for its owner: {answer.label}")


async def redeem(http: httpx.AsyncClient, user: str, scan: str, kind: str, wait_s: float) -> Answer:
    """A redemption of `scan` as `kind` sends it: naming the campaign, or not."""
    body = {"userId": user, "scanCode": scan, "requestId": user}
    if not kind.endswith(UNNAMED):
        body["codeType"] = CAMPAIGN
    start = time.perf_counter()
    response = await http.post(
        "/v1/redemptions", params={"wait": wait_s}, json=body, headers=AS_REDEEMER
    )
    took = time.perf_counter() - start
    reason = response.json().get("reasonCode") if response.content else None
    return Answer(kind, took, response.status_code, reason, response.headers.get("x-redemption-id"))


def plan(
    codes: dict[str, list[str]], count: int, rng: random.Random, sent: Sequence[str]
) -> list[tuple[str, str]]:
    """`count` (kind, code) pairs, the kinds `sent` in equal numbers, interleaved at
    random."""
    kinds = [sent[n % len(sent)] for n in range(count)]
    rng.shuffle(kinds)
    return [(kind, rng.choice(codes[kind.removesuffix(UNNAMED)])) for kind in kinds]


async def send_all(
    http: httpx.AsyncClient, requests: list[tuple[str, str]], args: argparse.Namespace, tag: str
) -> list[Answer]:
    """Each request from a user of its own, `--concurrency` at a time, in order."""
    gate = asyncio.Semaphore(args.concurrency)

    async def one(n: int, kind: str, scan: str) -> Answer:
        async with gate:
            return await redeem(http, f"{tag}-{n}", scan, kind, args.wait)

    return list(await asyncio.gather(*(one(n, k, s) for n, (k, s) in enumerate(requests))))


async def real_reasons(http: httpx.AsyncClient) -> dict[str, int | None]:
    """The reason kept for operators of every redemption, by its id (one refused
    without a codeType is in no campaign's listing)."""
    found: dict[str, int | None] = {}
    params: dict[str, Any] = {"limit": 500}
    while True:
        page = await call(http, "GET", "/v1/redemptions", params=params)
        found |= {r["redemptionId"]: r["reasonCode"] for r in page["items"]}
        if page["before"] is None:
            return found
        params["before"] = page["before"]


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank `q` quantile (0 < q <= 1) of `values`."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """The Mann-Whitney U of `a` against `b` and its two-sided p-value (normal
    approximation, with the tie correction): how likely samples of one distribution
    are to come out at least this far apart."""
    pooled = sorted([(x, 0) for x in a] + [(x, 1) for x in b])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    start = 0
    for _, group in itertools.groupby(range(len(pooled)), key=lambda i: pooled[i][0]):
        size = len(list(group))
        for i in range(start, start + size):
            ranks[i] = start + (size + 1) / 2
        ties += size**3 - size
        start += size
    n1, n2 = len(a), len(b)
    u = sum(r for r, (_, side) in zip(ranks, pooled, strict=True) if side == 0) - n1 * (n1 + 1) / 2
    n = n1 + n2
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    if variance <= 0:
        return u, 1.0
    z = (abs(u - n1 * n2 / 2) - 0.5) / math.sqrt(variance)
    return u, math.erfc(max(z, 0.0) / math.sqrt(2))


def bootstrap_interval(
    a: Sequence[float], b: Sequence[float], rng: random.Random, rounds: int = BOOTSTRAP_ROUNDS
) -> tuple[float, float]:
    """A 95% bootstrap interval of median(a) - median(b)."""
    differences = sorted(
        statistics.median(rng.choices(a, k=len(a))) - statistics.median(rng.choices(b, k=len(b)))
        for _ in range(rounds)
    )
    return differences[int(0.025 * rounds)], differences[int(0.975 * rounds) - 1]


@dataclass
class Figures:
    answers: list[Answer]
    real: dict[str, int | None]
    elapsed_s: float

    def times(self, kind: str) -> list[float]:
        return [a.took_s for a in self.answers if a.kind == kind]

    def told(self, kind: str) -> Counter[str]:
        return Counter(a.label for a in self.answers if a.kind == kind)

    def kept(self, kind: str) -> Counter[str]:
        ids = (a.redemption_id for a in self.answers if a.kind == kind)
        return Counter(str(self.real.get(i or "", "?")) for i in ids)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{label} x{n:,}" for label, n in counter.most_common())


def report(f: Figures, args: argparse.Namespace, rng: random.Random) -> None:
    uniform = "the campaign's" if args.uniform_by == "campaign" else "the service's"
    table = Table(
        title=f"{len(f.answers):,} refused redemptions over HTTP, {uniform} uniform refusals"
        f" on, {args.store} store, {args.workers} worker(s), {args.concurrency} at a time"
    )
    for column in ("kind", "count", "answered", "real reason (operators)"):
        table.add_column(column)
    table.add_column("median ms", justify="right")
    table.add_column("p90 ms", justify="right")
    for kind in itertools.chain(*kinds_sent(args)):
        took = f.times(kind)
        table.add_row(
            kind,
            f"{len(took):,}",
            _counts(f.told(kind)),
            _counts(f.kept(kind)),
            f"{statistics.median(took) * 1000:.2f}",
            f"{percentile(took, 0.9) * 1000:.2f}",
        )
    console.print(table)
    for group in kinds_sent(args):
        report_pairs(f, group, rng)
    console.print(f"all requests took {f.elapsed_s:.1f} s", markup=False)


def report_pairs(f: Figures, group: Sequence[str], rng: random.Random) -> None:
    """The differences of medians between the kinds of `group`, and the largest one's
    bootstrap interval."""
    sent = "without codeType" if group[0].endswith(UNNAMED) else "with codeType"
    pairs = Table(title=f"differences of medians between kinds {sent} (Mann-Whitney U, two-sided)")
    for column in ("kinds", "difference ms", "p"):
        pairs.add_column(column, justify="right" if column != "kinds" else "left")
    medians = {kind: statistics.median(f.times(kind)) for kind in group}
    for a, b in itertools.combinations(group, 2):
        _, p = mann_whitney(f.times(a), f.times(b))
        pairs.add_row(f"{a} - {b}", f"{(medians[a] - medians[b]) * 1000:+.2f}", f"{p:.3f}")
    console.print(pairs)
    a, b = max(itertools.combinations(group, 2), key=lambda p: abs(medians[p[0]] - medians[p[1]]))
    low, high = bootstrap_interval(f.times(a), f.times(b), rng)
    console.print(
        f"largest difference of medians {sent}: {a} - {b} = "
        f"{(medians[a] - medians[b]) * 1000:+.2f} ms, 95% bootstrap interval "
        f"[{low * 1000:+.2f}, {high * 1000:+.2f}] ms ({BOOTSTRAP_ROUNDS:,} rounds)",
        markup=False,
    )


async def measure(
    rabbit: servers.Rabbit,
    mongo_url: str | None,
    args: argparse.Namespace,
    work: Path,
    rng: random.Random,
) -> Figures:
    amqp = rabbit.new_vhost()
    env = system_env(
        rabbitmq_url=amqp,
        mongodb_url=mongo_url or "",
        db=f"t_{uuid.uuid4().hex[:8]}",
        api_keys=KEYS,
        data_dir=work / "data",
    )
    env.update(
        REDEEM_LOG_LEVEL="WARNING",
        REDEEM_UNIFORM_REFUSALS=str(args.uniform_by == "service").lower(),
        REDEEM_FAILURE_LIMITS="user=off",
    )
    system = System(env, work)
    pool = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    try:
        intake, *_ = system.start_all("intake", *["worker"] * args.workers, "results")
        async with httpx.AsyncClient(base_url=intake.url, timeout=120, limits=pool) as http:
            codes = draw_codes(rng, args.pool)
            await prepare(http, codes, args)
            sent = list(itertools.chain(*kinds_sent(args)))
            await send_all(http, plan(codes, args.warmup, rng, sent), args, "warmup")
            console.print(f"{args.requests:,} refused redemptions ...", markup=False)
            start = time.perf_counter()
            guesses = plan(codes, args.requests, rng, sent)
            answers = await send_all(http, guesses, args, "guesser")
            elapsed = time.perf_counter() - start
            real = await real_reasons(http)
    finally:
        system.stop()
        rabbit.drop_vhost(amqp)
    return Figures(answers, real, elapsed)


async def main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    with (
        servers.rabbitmq() as rabbit,
        servers.mongodb_url(args.store, console.print) as mongo_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        console.print(f"RabbitMQ: {rabbit.kind}")
        figures = await measure(rabbit, mongo_url, args, Path(tmp), rng)
    report(figures, args, rng)
    apart = 0
    for group in kinds_sent(args):
        told = {kind: set(figures.told(kind)) for kind in group}
        if len({frozenset(labels) for labels in told.values()}) != 1:
            console.print(f"[bold red]THE ANSWERS TELL THE KINDS APART[/]: {told}")
            apart = 1
    return apart


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--store", choices=("embedded", "mongodb"), default="embedded")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--pool", type=int, default=50, help="codes of each kind")
    parser.add_argument("--warmup", type=int, default=200, help="requests not counted")
    parser.add_argument("--wait", type=float, default=20.0, help="the ?wait= of each request")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--unnamed", action="store_true", help="send each kind without codeType too"
    )
    parser.add_argument(
        "--uniform-by",
        choices=("service", "campaign"),
        default="service",
        help="uniform refusals set for the whole service, or by the campaign alone",
    )
    sys.exit(asyncio.run(main(parser.parse_args())))
