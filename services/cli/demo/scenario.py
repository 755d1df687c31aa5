"""What the demo loads: its campaigns, their codes, the users and the mix of requests."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from services.cli.demo.driver import Attempt, Driver
from services.cli.errors import CliError
from services.cli.up import PARTNER_HANDLER

REWARD = {"reward": {"item": "gems", "quantity": 100}}
# Fulfilled over AMQP by the simulated partner, which answers later (async-response).
PARTNER_FULFILLMENT = {
    "handler": PARTNER_HANDLER,
    "handlerTransport": "amqp",
    "async": True,
    "timeout": 10,
    "pollInterval": 5,
    "maxRetries": 3,
    "retryBackoff": {"initial": 0.5, "max": 2},
}
# A worker killed mid-call leaves its attempt to time out and be retried by another.
FULFILLMENT = {
    "handler": "grant-reward",
    "timeout": 5,
    "maxRetries": 2,
    "retryBackoff": {"initial": 0.5, "max": 2},
}


@dataclass(frozen=True)
class Plan:
    """How many codes in each role; the rest of the inventory is left untouched."""

    codes: int = 10_000
    inactive: int = 500
    invalidated: int = 500
    over_http: int = 2_000
    over_amqp: int = 1_000
    raced: int = 100
    racers: int = 20
    duplicates: int = 300
    unknown: int = 200
    shared_max: int = 500
    shared_users: int = 1_000
    partner: int = 300


@dataclass
class Scenario:
    """One run's campaigns, named after it, and the requests it sends them."""

    plan: Plan
    campaign: str = field(default_factory=lambda: f"demo-{uuid.uuid4().hex[:8]}")

    def scan(self, n: int) -> str:
        return f"{self.campaign[5:].upper()}-{n:05d}"

    @property
    def shared(self) -> str:
        return self.campaign + "-shared"

    @property
    def parcels(self) -> str:
        return self.campaign + "-parcels"

    def parcel(self, n: int) -> str:
        return f"P{self.campaign[5:].upper()}-{n:04d}"

    @property
    def shared_scan(self) -> str:
        return f"FANS-{self.campaign[5:].upper()}"

    @property
    def code_types(self) -> tuple[str, ...]:
        return (self.campaign, self.shared, self.parcels)

    async def setup(self, driver: Driver) -> None:
        created = await driver.call(
            "POST", "/v1/campaigns", json={"codeType": self.campaign, **FULFILLMENT}
        )
        if created.status_code != 201:
            raise CliError(f"could not create the demo campaign: {created.text}")
        p = self.plan
        shared = {
            "codeType": self.shared,
            "codeUseType": "MULTI",
            "scanCode": self.shared_scan,
            "maxRedemptions": p.shared_max,
            "customCodeInfo": REWARD,
            **FULFILLMENT,
        }
        created = await driver.call("POST", "/v1/campaigns", json=shared)
        if created.status_code != 201:
            raise CliError(f"could not create the shared demo campaign: {created.text}")

        async def invalidate(n: int) -> None:
            path = f"/v1/campaigns/{self.campaign}/codes/{self.scan(n)}/invalidate"
            await driver.call("POST", path, json={"invalidationReason": "reported stolen"})

        parcels = {"codeType": self.parcels, **PARTNER_FULFILLMENT}
        created = await driver.call("POST", "/v1/campaigns", json=parcels)
        if created.status_code != 201:
            raise CliError(f"could not create the partner's demo campaign: {created.text}")

        codes = [
            {
                "scanCode": self.scan(n),
                "codeState": "Inactive" if n < p.inactive else "Available",
                "customCodeInfo": REWARD,
            }
            for n in range(p.codes)
        ]
        await _import(driver, self.campaign, codes)
        await _import(
            driver,
            self.parcels,
            [{"scanCode": self.parcel(n), "codeState": "Available"} for n in range(p.partner)],
        )
        first = p.inactive
        await driver.bounded(
            "invalidating codes", [invalidate(n) for n in range(first, first + p.invalidated)]
        )

    def attempts(self) -> list[Attempt]:
        p, campaign = self.plan, self.campaign
        n = p.inactive + p.invalidated
        plan: list[Attempt] = []
        plan += [
            # A user each: one user's failures would soon lock them out (429, 40765).
            Attempt("http", f"inactive-user-{i}", self.scan(i), "rejected:40398", campaign)
            for i in range(0, p.inactive, max(1, p.inactive // 200))
        ]
        plan += [
            Attempt("amqp", f"thief-{i}", self.scan(i), "rejected:40400", campaign)
            for i in range(p.inactive, n, max(1, p.invalidated // 200))
        ]
        singles = [
            Attempt("http", f"user-h{i}", self.scan(n + i), "redeemed", campaign)
            for i in range(p.over_http)
        ]
        plan += singles
        plan += [
            Attempt("amqp", f"user-a{i}", self.scan(n + p.over_http + i), "redeemed", campaign)
            for i in range(p.over_amqp)
        ]
        first_raced = n + p.over_http + p.over_amqp
        plan += [
            Attempt(
                "http" if r % 2 else "amqp",
                f"racer-{c}-{r}",
                self.scan(first_raced + c),
                f"race:{c}",
                campaign,
            )
            for c in range(p.raced)
            for r in range(p.racers)
        ]
        plan += [
            Attempt(
                a.via,
                a.user,
                a.scan,
                f"duplicate:{a.request_id}",
                a.code_type,
                request_id=a.request_id,
            )
            for a in singles[: p.duplicates]
        ]
        plan += [
            Attempt("http", f"guesser-{i}", f"NOPE-{i:05d}", "rejected:40395", campaign)
            for i in range(p.unknown)
        ]
        plan += [
            Attempt(
                "http" if i % 2 else "amqp", f"fan-{i}", self.shared_scan, "shared", self.shared
            )
            for i in range(p.shared_users)
        ]
        plan += [
            Attempt(
                "http" if i % 2 else "amqp", f"buyer-{i}", self.parcel(i), "partner", self.parcels
            )
            for i in range(p.partner)
        ]
        random.shuffle(plan)
        return plan


async def _import(driver: Driver, code_type: str, codes: Sequence[Mapping[str, object]]) -> None:
    """One bulk import of `codes` (NDJSON), every line taken."""
    lines = "".join(json.dumps(code) + "\n" for code in codes).encode()
    path = f"/v1/campaigns/{code_type}/codes/import"
    answer = await driver.call("POST", path, params={"format": "ndjson"}, content=lines)
    report = answer.json() if answer.status_code == 200 else {}
    if report.get("added", 0) + report.get("unchanged", 0) != len(codes):
        raise CliError(f"could not import the codes of {code_type}: {answer.text[:500]}")
