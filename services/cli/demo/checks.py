"""The invariants, checked on what callers got back, the stored codes and the events."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from services.cli.demo.driver import TERMINAL, Attempt, Driver, gather_bounded
from services.cli.demo.scenario import Scenario

FAILED = ("Failed", 40751)  # the partner refused every attempt

Check = tuple[str, bool, str]


async def check_invariants(
    driver: Driver, scenario: Scenario, attempts: list[Attempt]
) -> list[Check]:
    checks: list[Check] = [expectations_met(attempts, scenario.plan.shared_max)]
    accepted = {a.redemption_id for a in attempts if a.redemption_id}
    records = await gather_bounded([driver.settled(r) for r in accepted])
    unfinished = [r["redemptionId"] for r in records if r.get("status") not in TERMINAL]
    checks.append(
        (
            "every accepted request ended",
            not unfinished,
            f"{len(accepted)} redemptions, {len(unfinished)} not terminal",
        )
    )
    personal = [a for a in attempts if a.code_type != scenario.shared]
    touched = sorted({(a.scan, a.code_type) for a in personal if not a.scan.startswith("NOPE")})
    codes = await gather_bounded([driver.code(scan, code_type) for scan, code_type in touched])
    checks.append(never_twice(driver, scenario.shared, attempts, codes))
    shared_redeemed = sum(1 for a in attempts if a.expect == "shared" and a.status == "Redeemed")
    checks.append(await one_event_per_change(driver, scenario.shared, codes, shared_redeemed))
    return checks


def never_twice(
    driver: Driver, shared: str, attempts: list[Attempt], codes: list[dict[str, Any]]
) -> Check:
    """By the stored history, by the outcomes callers got, and by the events."""
    stored = [c["scanCode"] for c in codes if _count(c.get("history", []), "succeed") > 1]
    won: defaultdict[tuple[str, str], set[str | None]] = defaultdict(set)
    for a in attempts:
        if a.status == "Redeemed":  # a shared code: once per user
            won[(a.scan, a.user if a.code_type == shared else "")].add(a.redemption_id)
    answered = [scan for (scan, _), ids in won.items() if len(ids) > 1]
    redeemed = Counter(
        e["code"]["redemptionCodeId"]
        for e in driver.events.values()
        if e["eventType"] == "CodeRedeemed"
    )
    evented = [code for code, n in redeemed.items() if n > 1]
    twice = stored + answered + evented
    return (
        "no code redeemed twice",
        not twice,
        f"{len(codes)} codes, {sum(redeemed.values())} redeemed; {len(twice)} twice",
    )


def _count(history: list[dict[str, Any]], action: str) -> int:
    return sum(1 for h in history if h["action"] == action)


def expectations_met(attempts: list[Attempt], shared_max: int) -> Check:
    wrong: list[str] = []
    fans = [a for a in attempts if a.expect == "shared"]
    shared_won = sum(1 for a in fans if a.status == "Redeemed")
    if shared_won != min(shared_max, len(fans)):
        wrong.append(f"{shared_won} users redeemed the shared code, not {shared_max}")
    wrong += [
        f"fan {a.user}: {a.status} {a.reason}"
        for a in fans
        if a.status != "Redeemed" and a.reason != 40778
    ]
    originals = {a.request_id: a for a in attempts if not a.expect.startswith("duplicate")}
    race_winners: dict[str, set[str | None]] = defaultdict(set)
    for a in attempts:
        kind, _, detail = a.expect.partition(":")
        if kind == "redeemed" and a.status != "Redeemed":
            wrong.append(f"{a.scan} by {a.user}: {a.status} {a.reason}")
        elif kind == "rejected" and (a.status, a.reason) != ("Rejected", int(detail)):
            wrong.append(f"{a.scan}: {a.status} {a.reason}, expected {detail}")
        elif kind == "partner" and (a.status, a.reason) not in (("Redeemed", None), FAILED):
            wrong.append(f"{a.scan} (partner): {a.status} {a.reason}")
        elif kind == "duplicate" and a.redemption_id != originals[detail].redemption_id:
            wrong.append(f"{a.scan}: a repeated request got another redemption")
        elif kind == "race":
            if a.status == "Redeemed":
                race_winners[a.scan].add(a.redemption_id)
            elif a.reason != 40403:
                wrong.append(f"{a.scan} race: {a.status} {a.reason}")
    raced = {a.scan for a in attempts if a.expect.startswith("race")}
    wrong += [f"{s}: {len(race_winners[s])} winners" for s in raced if len(race_winners[s]) != 1]
    return (
        "every request got the outcome it should",
        not wrong,
        "; ".join(wrong[:3]) or f"{len(attempts)} requests as expected",
    )


async def one_event_per_change(
    driver: Driver, shared: str, codes: list[dict[str, Any]], shared_redeemed: int
) -> Check:
    """Personal codes: one event per entry of their history. Shared instances, whose
    history callers do not read: one event per version, ending redeemed."""
    changes = {c["redemptionCodeId"]: len(c.get("history", [])) for c in codes}

    def mismatched() -> list[str]:
        events = driver.events.values()
        seen: Counter[str] = Counter(e["code"]["redemptionCodeId"] for e in events)
        versions: defaultdict[str, dict[int, str]] = defaultdict(dict)
        for e in events:
            if e["code"]["codeType"] == shared:
                versions[e["code"]["redemptionCodeId"]][e["code"]["version"]] = e["eventType"]
        wrong = [code for code, n in changes.items() if seen[code] != n]
        wrong += [
            code
            for code, by_version in versions.items()
            if seen[code] != len(by_version)
            or sorted(by_version) != list(range(2, max(by_version) + 1))
            or by_version[max(by_version)] != "CodeRedeemed"
        ]
        return wrong + (["shared instances"] if len(versions) != shared_redeemed else [])

    await driver.until(lambda: not mismatched(), timeout_s=30)
    wrong = mismatched()
    total = sum(changes.values()) + sum(
        1 for e in driver.events.values() if e["code"]["codeType"] == shared
    )
    return (
        "one event per change",
        not wrong,
        f"{total} changes, {len(driver.events)} distinct events; {len(wrong)} codes differ",
    )
