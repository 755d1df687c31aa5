"""The checker, in the spirit of Jepsen: what happened, judged from the outside.

It reads the end state only as callers and observers can: every redemption by
`GET /v1/redemptions/{id}` (those the load was given and those the recent
listing shows), every personal code with its history, each shared campaign,
its inventory and its users' redeemed codes, the events a queue bound to
`redemption.events` received, the dead-letter queue, and the partner
simulator's request log. It waits, with deadlines, for every redemption to end
and for every transition's event, then counts what must never happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared import topology
from shared.domain.states import EVENT_NAMES, CodeState

if TYPE_CHECKING:
    from bench.faults.harness import Client, Observer, Request

TERMINAL = frozenset({"Redeemed", "Failed", "Rejected"})
Json = dict[str, Any]
# (redemptionCodeId, version): one transition of one code.
Key = tuple[str, int]


@dataclass
class Plan:
    """The campaigns a run made: personal ones by kind, shared ones with their maximum."""

    personal: dict[str, str] = field(default_factory=dict)
    shared: dict[str, int] = field(default_factory=dict)
    codes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def partner(self) -> set[str]:
        return {t for t, kind in self.personal.items() if kind == "partner"}


@dataclass(frozen=True)
class Transition:
    """A change a code's history (or a shared instance's version) says happened."""

    code_id: str
    version: int
    routing_key: str | None  # None: a shared instance's intermediate state, not known
    redemption_id: str | None


@dataclass
class EndState:
    requests: list[Request]
    plan: Plan
    records: dict[str, Json | None]
    listed_only: int
    codes: list[Json]
    campaigns: dict[str, Json]
    inventories: dict[str, Json]
    user_codes: dict[tuple[str, str], list[Json]]
    events: list[Json]
    dead_letters: list[Json]
    partner_requests: list[Json]
    unrecovered: list[str] = field(default_factory=list)


async def collect(
    client: Client,
    partner: Client,
    observer: Observer,
    plan: Plan,
    requests: list[Request],
    *,
    settle_s: float,
) -> EndState:
    ids = {r.redemption_id for r in requests if r.redemption_id}
    listed = await _listed(client, [*plan.personal, *plan.shared])
    records = await _settled(client, ids | listed, settle_s)
    codes = await _gather(
        [client.json("GET", f"/v1/campaigns/{t}/codes/{scan}") for t, scan in plan.codes]
    )
    campaigns = {t: await client.json("GET", f"/v1/campaigns/{t}") for t in plan.shared}
    inventories = {t: await client.json("GET", f"/v1/campaigns/{t}/inventory") for t in plan.shared}
    fans = sorted({(r.code_type, r.user) for r in requests if r.code_type in plan.shared})
    mine = await _gather(
        [
            client.json(
                "GET",
                f"/v1/users/{user}/redeemed-codes",
                params={"codeType": code_type},
                headers=client.redeemer,
            )
            for code_type, user in fans
        ]
    )
    end = EndState(
        requests=requests,
        plan=plan,
        records=records,
        listed_only=len(listed - ids),
        codes=codes,
        campaigns=campaigns,
        inventories=inventories,
        user_codes={fan: list(found["codes"]) for fan, found in zip(fans, mine, strict=True)},
        events=observer.events,
        dead_letters=[],
        partner_requests=[],
    )
    await _events_settled(observer, expected_transitions(end))
    end.dead_letters = await observer.dead_letters()
    end.partner_requests = list(await partner.json("GET", "/requests"))
    return end


async def _gather(work: Iterable[Any]) -> list[Any]:
    gate = asyncio.Semaphore(16)

    async def one(job: Any) -> Any:
        async with gate:
            return await job

    return list(await asyncio.gather(*(one(job) for job in work)))


async def _listed(client: Client, code_types: list[str]) -> set[str]:
    """Every redemption the recent-attempts listing shows for these campaigns."""
    found: set[str] = set()
    for code_type in code_types:
        params: dict[str, Any] = {"codeType": code_type, "limit": 500}
        while True:
            page = await client.json("GET", "/v1/redemptions", params=params)
            found |= {item["redemptionId"] for item in page["items"]}
            if not page.get("before"):
                break
            params["before"] = page["before"]
    return found


async def _settled(client: Client, ids: set[str], settle_s: float) -> dict[str, Json | None]:
    """Each redemption once terminal, or as it stands at the deadline (None: unknown)."""
    records: dict[str, Json | None] = dict.fromkeys(ids)
    deadline = time.monotonic() + settle_s

    async def read(rid: str) -> None:
        answer = await client.call("GET", f"/v1/redemptions/{rid}", headers=client.redeemer)
        records[rid] = answer.json() if answer.status_code == 200 else None

    while True:
        open_ids = [rid for rid, r in records.items() if r is None or r["status"] not in TERMINAL]
        await _gather([read(rid) for rid in open_ids])
        if all(r is not None and r["status"] in TERMINAL for r in records.values()):
            return records
        if time.monotonic() > deadline:
            return records
        await asyncio.sleep(0.25)


async def _events_settled(
    observer: Observer, expected: list[Transition], timeout_s: float = 20.0
) -> None:
    """Until every transition has its event (or the deadline), then until the stream has
    been quiet a moment (at most a few seconds): events re-published without end show."""
    deadline = time.monotonic() + timeout_s
    while _missing(expected, observer.events) and time.monotonic() < deadline:
        observer.arrived.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(observer.arrived.wait(), deadline - time.monotonic())
    quiet_by = time.monotonic() + 5.0
    seen = -1
    while seen != len(observer.events) and time.monotonic() < quiet_by:
        seen = len(observer.events)
        await asyncio.sleep(1.0)


def expected_transitions(end: EndState) -> list[Transition]:
    """Personal codes: every history entry, at the version it made. Shared instances
    (whose history callers cannot read): every version after creation, the last one
    in the state the redemption's code record shows."""
    found: list[Transition] = []
    for code in end.codes:
        history = code.get("history") or []
        base = int(code["version"]) - len(history)
        for i, entry in enumerate(history):
            key = "code." + EVENT_NAMES[CodeState(entry["toState"])]
            version = base + i + 1
            found.append(Transition(code["redemptionCodeId"], version, key, entry["redemptionId"]))
    for rid, record in end.records.items():
        instance = (record or {}).get("code")
        if not instance or instance["codeType"] not in end.plan.shared:
            continue
        last = int(instance["version"])
        final = "code." + EVENT_NAMES[CodeState(instance["codeState"])]
        for version in range(2, last + 1):
            found.append(
                Transition(
                    instance["redemptionCodeId"], version, final if version == last else None, rid
                )
            )
    return found


def _by_version(events: list[Json]) -> dict[Key, list[Json]]:
    found: dict[Key, list[Json]] = defaultdict(list)
    for event in events:
        code = event.get("code") or {}
        found[(code.get("redemptionCodeId", ""), int(code.get("version", 0)))].append(event)
    return found


def _missing(expected: list[Transition], events: list[Json]) -> list[Transition]:
    by_version = _by_version(events)

    def announced(t: Transition) -> bool:
        return any(
            (t.routing_key is None or e["_routingKey"] == t.routing_key)
            and (t.redemption_id is None or e.get("redemptionId") == t.redemption_id)
            for e in by_version.get((t.code_id, t.version), [])
        )

    return [t for t in expected if not announced(t)]


@dataclass
class Report:
    """One run's figures and the counts that must be zero, with examples of each."""

    title: str
    figures: dict[str, int | str]
    violations: dict[str, list[str]]

    @property
    def ok(self) -> bool:
        return not any(self.violations.values())

    def table(self) -> str:
        width = max(len(k) for k in [*self.figures, *self.violations]) + 2
        lines = [f"== fault-injection run: {self.title} =="]
        lines += [f"{k:<{width}}{v:>8}" for k, v in self.figures.items()]
        lines.append("-- must be zero --")
        lines += [f"{k:<{width}}{len(v):>8}" for k, v in self.violations.items()]
        for name, examples in self.violations.items():
            for example in examples[:3]:
                lines.append(f"  {name}: {example}"[:400])
        return "\n".join(lines)


def judge(end: EndState, *, title: str, cycles: int, faults: int, fired: int) -> Report:
    records = {rid: r for rid, r in end.records.items() if r is not None}
    statuses = Counter(r["status"] for r in records.values())
    deliveries = Counter(e["eventId"] for e in end.events)
    allowance = 3 + 2 * faults
    redeem_calls = _redeem_calls(end)
    figures: dict[str, int | str] = {
        "cycles": cycles,
        "faults injected": faults,
        "failpoints fired": fired,
        "requests sent": len(end.requests),
        "requests never accepted": sum(1 for r in end.requests if r.redemption_id is None),
        "accepted": len(end.records),
        "  of which listed only": end.listed_only,
        "terminal": sum(statuses[s] for s in TERMINAL),
        "redeemed": statuses["Redeemed"],
        "failed": statuses["Failed"],
        "rejected": statuses["Rejected"],
        "events delivered": len(end.events),
        "events distinct": len(deliveries),
        "most deliveries of one event": max(deliveries.values(), default=0),
        "dead-lettered": len(end.dead_letters),
        "partner redeem calls": sum(len(v) for v in redeem_calls.values()),
        # A crash between recording a call and making it: the attempt's deadline ends it
        # and a retry follows; never a second call of the same attempt.
        "attempts recorded called, never made": len(_uncalled(end, redeem_calls)),
    }
    violations = {
        "accepted but not terminal": _not_terminal(end),
        "codes redeemed twice": _redeemed_twice(end, records),
        "shared grants over maxRedemptions": _over_max(end, records),
        "status disagrees with code": _disagreements(end, records),
        "transitions without their event": [
            f"{t.code_id} v{t.version} {t.routing_key or ''} {t.redemption_id or ''}"
            for t in _missing(expected_transitions(end), end.events)
        ],
        "transition under two eventIds": [
            f"{key[0]} v{key[1]}: {sorted({e['eventId'] for e in events})}"
            for key, events in _by_version(end.events).items()
            if len({e["eventId"] for e in events}) > 1
        ],
        "handler calls beyond one per attempt": [
            f"{rid} attempt {attempt}: {len(keys)} calls"
            for (rid, attempt), calls in redeem_calls.items()
            if len(keys := {c.get("idempotencyKey") for c in calls}) > 1
        ],
        "shared refusals without cause": _groundless_refusals(end, records),
        "dead letters without a reason": [
            str({k: v for k, v in headers.items() if k != "x-death"})[:300]
            for headers in end.dead_letters
            if topology.DEAD_LETTER_REASON_HEADER not in headers
        ],
        f"events delivered over {allowance} times": [
            f"{event_id}: {n} deliveries"
            for event_id, n in deliveries.most_common()
            if n > allowance
        ],
        "processes that did not recover": end.unrecovered,
    }
    return Report(title, figures, violations)


def _not_terminal(end: EndState) -> list[str]:
    return [
        f"{rid}: {record['status'] if record else 'unknown (404)'}"
        + (f" {record.get('scanCode')}" if record else "")
        for rid, record in end.records.items()
        if record is None or record["status"] not in TERMINAL
    ]


def _redeemed_twice(end: EndState, records: dict[str, Json]) -> list[str]:
    """By a code's history, by the redemptions' outcomes, and by the events."""
    found = [
        f"{c['scanCode']}: {n} successes in its history"
        for c in end.codes
        if (n := sum(1 for h in c.get("history") or [] if h["action"] == "succeed")) > 1
    ]
    winners: dict[tuple[str, str], set[str]] = defaultdict(set)
    for rid, record in records.items():
        if record["status"] != "Redeemed":
            continue
        if record.get("codeType") in end.plan.shared:  # once per user
            winners[(record["codeType"], "user " + record["userId"])].add(rid)
        elif record.get("code"):
            winners[(record["codeType"], "code " + record["code"]["redemptionCodeId"])].add(rid)
    found += [
        f"{t} {who}: redeemed by {sorted(ids)}" for (t, who), ids in winners.items() if len(ids) > 1
    ]
    announced: dict[str, set[str]] = defaultdict(set)
    for event in end.events:
        code = event.get("code") or {}
        if event["_routingKey"] == "code.redeemed" and code.get("codeType") in end.plan.personal:
            announced[code["redemptionCodeId"]].add(str(event.get("redemptionId")))
    found += [
        f"{c}: code.redeemed for {sorted(ids)}" for c, ids in announced.items() if len(ids) > 1
    ]
    return found


def _over_max(end: EndState, records: dict[str, Json]) -> list[str]:
    found = []
    for code_type, most in end.plan.shared.items():
        won = sum(
            1
            for r in records.values()
            if r.get("codeType") == code_type and r["status"] == "Redeemed"
        )
        counted = int(end.campaigns[code_type].get("redemptionCount") or 0)
        stored = int(end.inventories[code_type].get("counts", {}).get("Redeemed", 0))
        granted = max(won, counted, stored)
        if granted > most:
            found.append(
                f"{code_type}: {won} redeemed, redemptionCount {counted},"
                f" {stored} instances Redeemed; maxRedemptions {most}"
            )
    return found


def _disagreements(end: EndState, records: dict[str, Json]) -> list[str]:
    """A redemption's status against the code it names (shared: the user's instance)."""
    codes = {c["redemptionCodeId"]: c for c in end.codes}
    holding = {c["redemptionId"]: c for c in end.codes if c.get("redemptionId")}
    found: list[str] = []
    for rid, record in records.items():
        status, user, code_type = record["status"], record["userId"], record.get("codeType")
        if code_type in end.plan.shared:
            instances = end.user_codes.get((code_type, user), [])
            mine = [c for c in instances if c.get("redemptionId") == rid]
            if (status == "Redeemed") != bool(mine):
                found.append(f"{rid} ({user}, shared): {status}, {len(mine)} instances redeemed")
            continue
        claimed = str((record.get("code") or {}).get("redemptionCodeId"))
        code = codes.get(claimed) or holding.get(rid)
        redeemed_here = (
            code is not None
            and code["codeState"] == "Redeemed"
            and code.get("redemptionId") == rid
            and code.get("redeemedByUserId") == user
        )
        if status == "Redeemed" and not redeemed_here:
            state = f"{code['codeState']} for {code.get('redemptionId')}" if code else "no code"
            found.append(f"{rid} ({user}): Redeemed, its code {state}")
        elif status in ("Failed", "Rejected") and redeemed_here:
            found.append(f"{rid} ({user}): {status} {record.get('reasonCode')}, its code Redeemed")
    for c in end.codes:
        if c["codeState"] == "Redeemed" and c.get("redemptionId") not in records:
            found.append(f"{c['scanCode']}: Redeemed for {c.get('redemptionId')}, unknown")
    return found


def _uncalled(end: EndState, calls: dict[tuple[str, int], list[Json]]) -> list[str]:
    """Partner campaigns' attempts failed for want of an answer although the partner,
    which answers every request, never got one: recorded as called, never made."""
    found = []
    for code in end.codes:
        if code["codeType"] not in end.plan.partner:
            continue
        attempt = 0
        for entry in code.get("history") or []:
            attempt = 0 if entry["action"] == "redeem" else attempt + (entry["action"] == "retry")
            reason = entry["reason"] or ""
            timed_out = entry["action"] == "fail" and "no complete answer" in reason
            if timed_out and (entry["redemptionId"], attempt) not in calls:
                found.append(f"{code['scanCode']} {entry['redemptionId']} attempt {attempt}")
    return found


def _groundless_refusals(end: EndState, records: dict[str, Json]) -> list[str]:
    """Shared-code users refused as 'in progress' (40750) with no other redemption of
    theirs that could be (the load sends one per user, repeated with its requestId)."""
    theirs = Counter(
        (r.get("codeType"), r["userId"])
        for r in records.values()
        if r.get("codeType") in end.plan.shared
    )
    return [
        f"{rid} ({r['userId']}): Rejected 40750"
        for rid, r in records.items()
        if r.get("codeType") in end.plan.shared
        and r["status"] == "Rejected"
        and r.get("reasonCode") == 40750
        and theirs[(r.get("codeType"), r["userId"])] == 1
    ]


def _redeem_calls(end: EndState) -> dict[tuple[str, int], list[Json]]:
    """The partner's `redeem` requests for this run's campaigns, by (redemption, attempt);
    a request the broker delivered again carries the same `idempotencyKey`."""
    calls: dict[tuple[str, int], list[Json]] = defaultdict(list)
    for request in end.partner_requests:
        if request.get("operation") == "redeem" and request.get("codeType") in end.plan.partner:
            calls[(str(request.get("redemptionId")), int(request.get("attempt") or 0))].append(
                request
            )
    return calls
