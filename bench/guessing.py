"""Brute-force guessing against the failure budget: how many guesses reach a code.

Starts the system (intake, workers, results) once per failure-limit configuration,
each on a store and a RabbitMQ virtual host of its own, with one admin key and one
redeem key. It generates `--codes` Available codes (FiveByFive, through the API's
generation job), then `--users` users behind the one redeem key send `--guesses`
guesses, round-robin, with bounded concurrency over keep-alive HTTP and `?wait=`:
random well-formed FiveByFive codes, none of them in the inventory. A legitimate
user of the same key redeems real codes at a quarter, half and three quarters of
the attack and after it.

Per configuration it prints how many guesses reached a code (a guess's refusal,
such as 404/40395) and how many were refused locked out (429/40765), each user's
time from first guess to first 429, the total time, the legitimate user's
outcomes and the lockouts operators see. Exit 1 when an invariant breaks: more
guesses reached codes than the limits allow (users x the user limit, or the key,
address or campaign limit when lower), a guess succeeded, or a code changed that
the legitimate user did not redeem.

    .venv/bin/python -m bench.guessing [--guesses 10000] [--users 10] [--codes 10000]
        [--store embedded|mongodb] [--limits SPEC ...] [--workers 2] [--concurrency 64]

MongoDB is the one the tests would use (REDEEM_TEST_MONGODB_URL, else a local
SecantusDB surrogate); RabbitMQ the local broker, a virtual host a configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from bench.support import servers
from bench.support.processes import System, system_env
from shared.domain.generation import Format
from shared.domain.scancode import normalise
from shared.domain.throttling import COUNTED, FailureLimits, ScopeKind

ADMIN, REDEEM = "bench-admin", "bench-redeem"
KEYS = f"{ADMIN}=admin;{REDEEM}=redeem"
AS_ADMIN = {"Authorization": f"Bearer {ADMIN}"}
AS_REDEEMER = {"Authorization": f"Bearer {REDEEM}"}
CAMPAIGN = "guessing"
LEGIT_USER = "legit-user"
LOCKED = 40765
# The default limits, then a key limit below what the users' limits let through, so it bites.
CONFIGS = ("user=10/15m", "user=10/15m,key=50/15m")
DURING = (0.25, 0.5, 0.75)  # where in the attack the legitimate user redeems
AFTER = 2  # and how many codes after it
TRANSPORT_TRIES = 4
TERMINAL = {"Redeemed", "Failed", "Rejected"}
console = Console() if sys.stdout.isatty() else Console(width=160)


@dataclass(frozen=True)
class Request:
    user: str
    scan: str
    when: str  # "attack", or when the legitimate user redeems: "25%", "after"
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def body(self) -> dict[str, str]:
        return {
            "userId": self.user,
            "scanCode": self.scan,
            "codeType": CAMPAIGN,
            "requestId": self.request_id,
        }


@dataclass
class Answer:
    request: Request
    sent_s: float  # from the start of the attack
    received_s: float
    status: int  # 0: no answer (transport error)
    reason: int | None = None
    retry_after: str | None = None
    redemption_id: str | None = None

    @classmethod
    def of(cls, request: Request, sent_s: float, received_s: float, r: httpx.Response) -> Answer:
        try:
            body: dict[str, Any] = r.json()
        except ValueError:
            body = {}
        return cls(
            request,
            sent_s,
            received_s,
            r.status_code,
            body.get("reasonCode"),
            r.headers.get("retry-after"),
            body.get("redemptionId") or r.headers.get("x-redemption-id"),
        )

    @property
    def outcome(self) -> str:
        if self.status == 200:
            return "succeeded"
        if self.reason == LOCKED:
            return "locked out"
        if self.reason is not None and self.reason in COUNTED:
            return "reached"
        return "pending" if self.status == 202 else "other"

    @property
    def label(self) -> str:
        return f"{self.status}/{self.reason}" if self.reason else str(self.status)


@dataclass
class Figures:
    """What one configuration came to."""

    limits: str
    answers: list[Answer]
    elapsed_s: float
    bound: int | None
    lockouts: list[dict[str, Any]]
    inventory: dict[str, int]

    @property
    def guesses(self) -> list[Answer]:
        return [a for a in self.answers if a.request.when == "attack"]

    @property
    def legit(self) -> list[Answer]:
        return [a for a in self.answers if a.request.when != "attack"]

    def count(self, outcome: str) -> int:
        return sum(a.outcome == outcome for a in self.guesses)


def reach_bound(limits: FailureLimits, users: int, elapsed_s: float) -> int | None:
    """The most guesses that may reach a code in `elapsed_s`: each scope lets its limit
    through per window, and every guess counts in its user's, the key's, the one
    address's and the campaign's scope; None when nothing is counted."""
    bounds = []
    for kind in ScopeKind:
        limit = limits.of(kind)
        if limit is None:
            continue
        windows = math.floor(elapsed_s / limit.window.total_seconds()) + 1
        per_window = limit.failures * (users if kind is ScopeKind.USER else 1)
        bounds.append(per_window * windows)
    return min(bounds, default=None)


def guesses_outside(inventory: set[str], count: int) -> list[str]:
    """`count` random FiveByFive codes, none of them in `inventory`."""
    fmt = Format.named("FiveByFive", {})
    found: list[str] = []
    while len(found) < count:
        drawn = fmt.generate(count - len(found), secrets.token_bytes)
        found += [c for c in drawn if normalise(c) not in inventory]
    return found


def plan(real: list[str], guesses: list[str], users: int) -> list[Request]:
    """The guesses, round-robin over the users, with the legitimate user's redemptions
    at `DURING` fractions of the way."""
    attack = [Request(f"guesser-{n % users}", scan, "attack") for n, scan in enumerate(guesses)]
    for k, fraction in reversed(list(enumerate(DURING))):
        at = round(len(attack) * fraction)
        attack.insert(at, Request(LEGIT_USER, real[k], f"{fraction:.0%}"))
    return attack


async def call(http: httpx.AsyncClient, method: str, path: str, **kw: Any) -> Any:
    answer = await http.request(method, path, headers=AS_ADMIN, **kw)
    if answer.status_code >= 300 and answer.status_code != 202:
        raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text}")
    json_body = answer.headers.get("content-type", "").startswith("application/json")
    return answer.json() if json_body else answer.text


async def inventory(http: httpx.AsyncClient, codes: int) -> list[str]:
    """A campaign of `codes` Available codes, generated by a job; their scan codes."""
    await call(http, "POST", "/v1/campaigns", json={"codeType": CAMPAIGN})
    body = {"quantity": codes, "codeState": "Available"}
    job = await call(http, "POST", f"/v1/campaigns/{CAMPAIGN}/codes/generate", json=body)
    deadline = time.monotonic() + 600
    while (state := await call(http, "GET", f"/v1/jobs/{job['jobId']}"))["state"] == "Running":
        if time.monotonic() > deadline:
            raise TimeoutError(f"generation job at {state['done']} of {codes} after 600 s")
        await asyncio.sleep(0.2)
    if state["state"] != "Completed":
        raise RuntimeError(f"generation job ended {state}")
    lines = await call(http, "GET", f"/v1/jobs/{job['jobId']}/codes", params={"format": "ndjson"})
    return [json.loads(line)["scanCode"] for line in str(lines).splitlines() if line]


async def send(http: httpx.AsyncClient, request: Request, wait_s: float, t0: float) -> Answer:
    """One redemption over HTTP; a transport error is tried again with the same requestId
    (the same redemption)."""
    sent = time.perf_counter() - t0
    for attempt in range(TRANSPORT_TRIES):
        try:
            response = await http.post(
                "/v1/redemptions", params={"wait": wait_s}, json=request.body, headers=AS_REDEEMER
            )
            return Answer.of(request, sent, time.perf_counter() - t0, response)
        except httpx.TransportError:
            await asyncio.sleep(0.1 * 2**attempt)
    return Answer(request, sent, time.perf_counter() - t0, 0)


async def send_all(
    http: httpx.AsyncClient, requests: list[Request], concurrency: int, wait_s: float, t0: float
) -> list[Answer]:
    gate = asyncio.Semaphore(concurrency)  # FIFO: requests go out in `requests` order

    async def one(request: Request) -> Answer:
        async with gate:
            return await send(http, request, wait_s, t0)

    return list(await asyncio.gather(*(one(r) for r in requests)))


async def resolve(http: httpx.AsyncClient, answers: list[Answer], timeout_s: float = 60) -> None:
    """Look up the outcome of each redemption still running when its wait ended (202)."""
    deadline = time.monotonic() + timeout_s
    while (pending := [a for a in answers if a.outcome == "pending" and a.redemption_id]) and (
        time.monotonic() < deadline
    ):
        for answer in pending:
            found = await http.get(f"/v1/redemptions/{answer.redemption_id}", headers=AS_ADMIN)
            record = found.json()
            if record.get("status") in TERMINAL:
                answer.status = 200 if record["status"] == "Redeemed" else 202
                answer.reason = record.get("reasonCode")
        await asyncio.sleep(0.5)


async def attack(
    http: httpx.AsyncClient, spec: str, args: argparse.Namespace
) -> tuple[list[Answer], float, dict[str, Any]]:
    real = await inventory(http, args.codes)
    requests = plan(real, guesses_outside({normalise(c) for c in real}, args.guesses), args.users)
    after = [Request(LEGIT_USER, scan, "after") for scan in real[len(DURING) : len(DURING) + AFTER]]
    console.print(f"{spec}: {len(real):,} codes ready; {args.guesses:,} guesses ...", markup=False)
    t0 = time.perf_counter()
    answers = await send_all(http, requests, args.concurrency, args.wait, t0)
    elapsed = time.perf_counter() - t0
    answers += [await send(http, r, args.wait, t0) for r in after]
    await resolve(http, answers)
    stock = await call(http, "GET", f"/v1/campaigns/{CAMPAIGN}/inventory")
    return answers, elapsed, {"lockouts": await lockouts(http), "inventory": stock}


async def lockouts(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    """Every scope locked out now, page by page."""
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 500}
    while True:
        page = await call(http, "GET", "/v1/lockouts", params=params)
        found += page["items"]
        if not page.get("after"):
            return found
        params["after"] = page["after"]


async def configuration(
    rabbit: servers.Rabbit, mongo_url: str | None, spec: str, args: argparse.Namespace, work: Path
) -> Figures:
    """One configuration on a system of its own: a fresh store and virtual host."""
    amqp = rabbit.new_vhost()
    env = system_env(
        rabbitmq_url=amqp,
        mongodb_url=mongo_url or "",
        db=f"g_{uuid.uuid4().hex[:8]}",
        api_keys=KEYS,
        data_dir=work / uuid.uuid4().hex,
    )
    env.update(REDEEM_LOG_LEVEL="WARNING", REDEEM_FAILURE_LIMITS=spec)
    system = System(env, work)
    pool = httpx.Limits(
        max_connections=args.concurrency, max_keepalive_connections=args.concurrency
    )
    try:
        intake = system.start("intake")
        for _ in range(args.workers):
            system.start("worker")
        system.start("results")
        async with httpx.AsyncClient(base_url=intake.url, timeout=120, limits=pool) as http:
            answers, elapsed, seen = await attack(http, spec, args)
    finally:
        system.stop()
        rabbit.drop_vhost(amqp)
    bound = reach_bound(FailureLimits.parse(spec), args.users, elapsed)
    return Figures(spec, answers, elapsed, bound, seen["lockouts"], _states(seen["inventory"]))


def _states(inventory: dict[str, Any]) -> dict[str, int]:
    """A campaign's codes by state, from its inventory answer."""
    return {str(k): int(v) for k, v in inventory["counts"].items()}


def first_lockouts(answers: list[Answer]) -> tuple[list[float], int]:
    """Each user's seconds from their first guess to their first 429; the users never
    locked out."""
    first_sent: dict[str, float] = {}
    first_locked: dict[str, float] = {}
    for a in answers:
        user = a.request.user
        first_sent[user] = min(first_sent.get(user, a.sent_s), a.sent_s)
        if a.outcome == "locked out":
            first_locked[user] = min(first_locked.get(user, a.received_s), a.received_s)
    times = sorted(first_locked[u] - first_sent[u] for u in first_locked)
    return times, len(first_sent) - len(first_locked)


def violations(figures: Figures, codes: int) -> list[str]:
    found = []
    reached = figures.count("reached")
    if figures.bound is not None and reached > figures.bound:
        found.append(f"{reached} guesses reached a code, more than the {figures.bound} allowed")
    if succeeded := figures.count("succeeded"):
        found.append(f"{succeeded} guesses succeeded against codes not in the inventory")
    redeemed = sum(a.outcome == "succeeded" for a in figures.legit)
    expected = {"Available": codes - redeemed, "Redeemed": redeemed}
    got = {state: n for state, n in figures.inventory.items() if n}
    if got != {state: n for state, n in expected.items() if n}:
        found.append(f"inventory {got}, expected {expected}")
    return found


def _seconds(times: list[float], never: int) -> str:
    if not times:
        return f"none locked out ({never} users)"
    spread = f"{min(times):.2f} / {statistics.median(times):.2f} / {max(times):.2f}"
    return spread + (f" ({never} never)" if never else "")


def _lockouts(found: list[dict[str, Any]]) -> str:
    kinds = Counter(str(x["scope"]).split(":")[0] for x in found)
    keys = [f"{x['scope']} ({x['failures']})" for x in found if str(x["scope"]).startswith("key")]
    return ", ".join([f"{n} {kind}" for kind, n in sorted(kinds.items())] + keys) or "none"


def _retry_after(locked: list[Answer]) -> str:
    given = sorted(int(a.retry_after) for a in locked if a.retry_after is not None)
    return f"{len(given):,} ({given[0]}-{given[-1]})" if given else "0"


def _latency(answers: list[Answer], outcome: str) -> str:
    took = sorted(a.received_s - a.sent_s for a in answers if a.outcome == outcome)
    if not took:
        return "-"
    p95 = took[min(len(took) - 1, math.ceil(0.95 * len(took)) - 1)]
    return f"{statistics.median(took) * 1000:,.0f} / {p95 * 1000:,.0f}"


def rows(f: Figures) -> list[tuple[str, str]]:
    guesses = f.guesses
    locked = [a for a in guesses if a.outcome == "locked out"]
    times, never = first_lockouts(guesses)
    refusals = Counter(a.label for a in guesses if a.outcome in ("reached", "other"))
    return [
        ("guesses sent", f"{len(guesses):,}"),
        ("reached a code (a guess's refusal)", f"{f.count('reached'):,}"),
        ("  most the limits allow", "-" if f.bound is None else f"{f.bound:,}"),
        ("  answers other than 429", ", ".join(f"{k} x{n}" for k, n in refusals.items())),
        ("succeeded (200)", f"{f.count('succeeded'):,}"),
        ("locked out (429/40765)", f"{len(locked):,}"),
        ("  of which with Retry-After (its range, s)", _retry_after(locked)),
        ("  of which refused by a worker", f"{sum(a.redemption_id is not None for a in locked):,}"),
        ("other or no answer", f"{f.count('other') + f.count('pending'):,}"),
        ("first guess -> first 429, s (min / median / max)", _seconds(times, never)),
        ("answer time reached, ms (p50 / p95)", _latency(guesses, "reached")),
        ("answer time locked out, ms (p50 / p95)", _latency(guesses, "locked out")),
        ("total time, s", f"{f.elapsed_s:.1f} ({len(guesses) / f.elapsed_s:,.0f} guesses/s)"),
        ("legitimate user, same key", ", ".join(f"{a.request.when}: {a.label}" for a in f.legit)),
        ("lockouts listed (GET /v1/lockouts)", _lockouts(f.lockouts)),
        ("codes by state after", ", ".join(f"{k} {v:,}" for k, v in f.inventory.items() if v)),
    ]


def report(all_figures: list[Figures], args: argparse.Namespace) -> None:
    table = Table(
        title=f"{args.guesses:,} guesses from {args.users} users behind one key,"
        f" {args.codes:,} codes, {args.store} store, {args.workers} worker(s)"
    )
    table.add_column("REDEEM_FAILURE_LIMITS")
    for f in all_figures:
        table.add_column(f.limits, justify="right")
    columns = [rows(f) for f in all_figures]
    for n, (name, _) in enumerate(columns[0]):
        table.add_row(name, *(c[n][1] for c in columns))
    console.print(table)


async def main(args: argparse.Namespace) -> int:
    all_figures = []
    with (
        servers.rabbitmq() as rabbit,
        servers.mongodb_url(args.store, console.print) as mongo_url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        console.print(f"RabbitMQ: {rabbit.kind}")
        for spec in args.limits or CONFIGS:
            all_figures.append(await configuration(rabbit, mongo_url, spec, args, Path(tmp)))
    report(all_figures, args)
    broken = [(f.limits, v) for f in all_figures for v in violations(f, args.codes)]
    for limits, violation in broken:
        console.print(f"[bold red]INVARIANT BROKEN[/] ({limits}): {violation}")
    return 1 if broken else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guesses", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--codes", type=int, default=10_000)
    parser.add_argument("--store", choices=("embedded", "mongodb"), default="embedded")
    parser.add_argument(
        "--limits",
        action="append",
        help=f"a REDEEM_FAILURE_LIMITS to run (repeat for more); default {' and '.join(CONFIGS)}",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--wait", type=float, default=20.0, help="the ?wait= of each request")
    sys.exit(asyncio.run(main(parser.parse_args())))
