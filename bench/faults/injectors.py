"""The kinds of fault, each injected alongside a cycle's load.

- `Failpoints`: one process role started with `REDEEM_FAILPOINTS` (one failpoint
  a cycle, in turn); a process a failpoint killed is started again, armed a
  bounded number of times, then clean.
- `Kills`: SIGKILL of a random worker, the results relay or the intake under
  load, each started again after a short pause.
- `BrokerOutage`: the local RabbitMQ's application stopped and started.
- `MongoOutage`: the run's own SecantusDB stopped and started on its data.
- `SqliteLock`: another connection holding the embedded store's file locked.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import subprocess
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.faults.harness import Cluster, Progress, Run, wait_ready
from bench.support.servers import Secantus, wait_for_port

# Where each failpoint lives (shared/runtime/failpoints.py names them).
FAILPOINT_ROLES = {
    "intake-after-publish": "intake",
    "after-claim": "worker",
    "before-fulfillment-call": "worker",
    "after-fulfillment-call": "worker",
    "in-give-up": "worker",
    "after-timer-taken": "worker",
    "relay-before-mark": "results",
    "relay-before-reply-mark": "results",
}


@dataclass(frozen=True)
class Arming:
    """One cycle's failpoints: `spec` (REDEEM_FAILPOINTS) on every process of `role`.

    `keep`: leave them armed to the end, as a process a `raise` or `stall` does not
    kill lives on with it; otherwise they are disarmed (processes restarted clean)
    once the cycle's redemptions ended or the cycle's deadline passed."""

    role: str
    spec: str
    keep: bool = False

    @property
    def names(self) -> list[str]:
        return [entry.partition("=")[0] for entry in self.spec.split(",")]


# Each failpoint in turn, killing the process at it now and then.
EACH_KILLING = tuple(
    Arming(role, f"{name}=kill@0.3")
    for name, role in FAILPOINT_ROLES.items()
    if name != "in-give-up"
)
# A give-up is reached only at the delivery limit: with REDEEM_MAX_DELIVERIES=1 a job
# whose first delivery raised after its claim is given up on its redelivery.
GIVE_UP_RAISING = Arming("worker", "after-claim=raise@0.5,in-give-up=raise@0.5", keep=True)
GIVE_UP_ENV = {"REDEEM_MAX_DELIVERIES": "1"}


@dataclass
class Failpoints:
    armings: tuple[Arming, ...]
    rearm: int = 2  # times a killed process comes back armed before it comes back clean
    cycle_deadline_s: float = 6.0
    name: str = "failpoints"
    _deaths: Counter[str] = field(default_factory=Counter)

    def arming(self, run: Run) -> Arming:
        return self.armings[run.cycle % len(self.armings)]

    async def arm(self, run: Run) -> None:
        """Arm this cycle's role, disarm the others: restart only what must change."""
        arming, cluster = self.arming(run), run.cluster
        cluster.armed.clear()
        cluster.armed[arming.role] = arming.spec
        changed = [s for s in cluster.slots if cluster.slots[s].extra != cluster.wanted(s)]
        await restart(cluster, changed, None)

    async def during(self, run: Run, progress: Progress) -> int:
        arming, cluster = self.arming(run), run.cluster
        slots = cluster.of(arming.role)
        revived: Counter[str] = Counter()
        deadline: float | None = None
        while True:
            for slot in slots:
                if cluster.slots[slot].alive:
                    continue
                self._deaths[slot] += 1
                clean = revived[slot] >= self.rearm
                revived[slot] += 1
                await asyncio.to_thread(cluster.revive, slot, wait=False, env={} if clean else None)
            if progress.done.is_set():
                deadline = deadline or time.monotonic() + self.cycle_deadline_s
                if time.monotonic() > deadline or await run.cycle_settled():
                    break
            await asyncio.sleep(0.2)
        last = run.cycle == run.size.cycles - 1
        if last and not arming.keep:  # otherwise the next cycle's arming restarts them
            cluster.armed.clear()
            await restart(cluster, [s for s in slots if cluster.slots[s].extra], {})
        for name in arming.names:
            run.figures[f"fired {name}"] = cluster.failpoints_fired(f'"{name}"')
        return len(slots)


async def restart(cluster: Cluster, slots: list[str], env: dict[str, str] | None) -> None:
    """Restart `slots` one by one (armed as their role is when `env` is None), then wait
    for them together."""
    for slot in slots:
        await asyncio.to_thread(cluster.revive, slot, wait=False, env=env)
    await asyncio.gather(*(asyncio.to_thread(wait_ready, cluster.slots[s]) for s in slots))


@dataclass
class Kills:
    """SIGKILL of a random process among `roles` every so often while the load runs (and
    twice more after it), each started again after a short pause."""

    roles: tuple[str, ...] = ("worker", "results", "intake")
    after_load: int = 2
    name: str = "SIGKILL"

    async def arm(self, run: Run) -> None:
        return None

    async def during(self, run: Run, progress: Progress) -> int:
        await progress.reached(0.2)
        kills, more = 0, self.after_load
        while not progress.done.is_set() or more > 0:
            if progress.done.is_set():
                more -= 1
            slot = random.choice([s for r in self.roles for s in run.cluster.of(r)])
            await asyncio.to_thread(run.cluster.slots[slot].kill)
            kills += 1
            run.figures[f"killed {slot.split('-')[0]}"] = (
                int(run.figures.get(f"killed {slot.split('-')[0]}", 0)) + 1
            )
            await asyncio.sleep(random.uniform(0.2, 0.6))
            await asyncio.to_thread(run.cluster.revive, slot)
            await asyncio.sleep(random.uniform(0.2, 1.0))
        return kills


def rabbitmqctl(*args: str, timeout_s: float = 60) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=timeout_s)


def broker_outage(outage_s: float, amqp_url: str) -> None:
    """Stop the local broker's application, and start it again whatever happens."""
    rabbitmqctl("stop_app")
    try:
        time.sleep(outage_s)
    finally:
        start_broker(amqp_url)


def start_broker(amqp_url: str) -> None:
    """`start_app`, tried again until it took, then wait until the broker of `amqp_url`
    answers."""
    deadline = time.monotonic() + 120
    while True:
        try:
            rabbitmqctl("start_app")
            break
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
    rabbitmqctl("await_startup", timeout_s=120)
    where = urllib.parse.urlsplit(amqp_url)
    wait_for_port(where.hostname or "127.0.0.1", where.port or 5672, 60, "RabbitMQ")
    rabbitmqctl("list_vhosts")  # what the session's fixtures need answers again


@dataclass
class BrokerOutage:
    outage_s: float = 3.0
    name: str = "RabbitMQ stop_app/start_app"

    async def arm(self, run: Run) -> None:
        return None

    async def during(self, run: Run, progress: Progress) -> int:
        await progress.reached(0.3)
        await asyncio.to_thread(broker_outage, self.outage_s, run.cluster.amqp_url)
        return 1


@dataclass
class MongoOutage:
    """The run's own SecantusDB stopped for a few seconds, then started on its data."""

    server: Secantus
    outage_s: float = 3.0
    name: str = "MongoDB stopped and started"

    async def arm(self, run: Run) -> None:
        return None

    async def during(self, run: Run, progress: Progress) -> int:
        await progress.reached(0.3)
        await asyncio.to_thread(self.server.pause)
        try:
            await asyncio.sleep(self.outage_s)
        finally:
            await asyncio.to_thread(self.server.resume)
        return 1


def hold_locked(path: Path, hold_s: float) -> None:
    """`BEGIN EXCLUSIVE` on the store's file for `hold_s`, then let go."""
    db = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        db.execute("BEGIN EXCLUSIVE")
        time.sleep(hold_s)
        db.execute("ROLLBACK")
    finally:
        db.close()


@dataclass
class SqliteLock:
    hold_s: float = 3.0
    name: str = "SQLite file locked"

    async def arm(self, run: Run) -> None:
        return None

    async def during(self, run: Run, progress: Progress) -> int:
        await progress.reached(0.3)
        await asyncio.to_thread(hold_locked, run.cluster.sqlite_path, self.hold_s)
        return 1
