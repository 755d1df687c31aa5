"""The fault-injection suite at any size: the harness and checker `tests/faults` runs small.

Runs each fault kind (or the one `--fault` names) for `--cycles` cycles on each
store (or the one `--store` names), and prints the checker's table of each run:
what was sent, accepted and ended, and the counts that must be zero. Exits 1
when one of them is not. The failpoints take turns, one a cycle: 50 cycles arm
each of the seven that kill seven or eight times.

    .venv/bin/python -m bench.faults --cycles 10 [--store embedded|mongodb]
        [--fault kills|failpoints|give-up|broker|store] [--scale 2]

MongoDB is the one the tests would use (REDEEM_TEST_MONGODB_URL, else a local
SecantusDB surrogate; the store outage starts one of its own); RabbitMQ the
tests' too, a virtual host a run. The broker outage runs on the local broker only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.faults.checker import Report
from bench.faults.harness import STORES, Cluster, Fault, Size, run_fault
from bench.faults.injectors import (
    EACH_KILLING,
    GIVE_UP_ENV,
    GIVE_UP_RAISING,
    BrokerOutage,
    Failpoints,
    Kills,
    MongoOutage,
    SqliteLock,
)
from bench.support import servers

FAULTS = ("kills", "failpoints", "give-up", "broker", "store")


@dataclasses.dataclass
class Servers:
    rabbit: servers.Rabbit
    stack: contextlib.ExitStack
    mongo: servers.Mongo | None = None

    def mongodb_url(self) -> str:
        if self.mongo is None:
            self.mongo = self.stack.enter_context(servers.mongodb())
        return self.mongo.url


def scaled(cycles: int, scale: int) -> Size:
    base = Size()
    return dataclasses.replace(
        base,
        cycles=cycles,
        personal_codes=base.personal_codes * scale,
        local_codes=base.local_codes * scale,
        shared_max=base.shared_max * scale,
        shared_users=base.shared_users * scale,
        partner_codes=base.partner_codes * scale,
        duplicates=base.duplicates * scale,
        settle_s=base.settle_s * scale,
    )


@contextlib.contextmanager
def setup(
    fault: str, store: str, found: Servers, home: Path
) -> Iterator[tuple[Cluster, Fault] | str]:
    """The cluster and fault of one run, or why it does not run here."""
    env: dict[str, str] = {}
    injected: Fault
    mongodb_url = found.mongodb_url() if store == "mongodb" else None
    if fault == "kills":
        injected = Kills()
    elif fault == "failpoints":
        injected = Failpoints(EACH_KILLING)
    elif fault == "give-up":
        injected, env = Failpoints((GIVE_UP_RAISING,), name="in-give-up"), GIVE_UP_ENV
    elif fault == "broker":
        if not found.rabbit.local:
            yield f"the broker outage stops the local broker only, not {found.rabbit.kind}"
            return
        injected = BrokerOutage()
    elif store == "embedded":
        injected = SqliteLock()
    elif os.environ.get("REDEEM_TEST_MONGODB_URL"):
        yield "the MongoDB outage needs a SecantusDB of its own, not REDEEM_TEST_MONGODB_URL"
        return
    else:
        own = servers.Secantus.start()
        try:
            cluster = Cluster.create(
                store=store,
                amqp_url=found.rabbit.new_vhost(),
                mongodb_url=own.url,
                home=home,
                workers=Size.workers,
            )
            yield cluster, MongoOutage(own)
        finally:
            own.close()
        return
    cluster = Cluster.create(
        store=store,
        amqp_url=found.rabbit.new_vhost(),
        mongodb_url=mongodb_url,
        home=home,
        workers=Size.workers,
        env=env,
    )
    yield cluster, injected


async def main(args: argparse.Namespace) -> bool:
    faults = FAULTS if args.fault == "all" else (args.fault,)
    stores = STORES if args.store == "all" else (args.store,)
    reports: list[Report] = []
    with contextlib.ExitStack() as stack:
        found = Servers(stack.enter_context(servers.rabbitmq()), stack)
        for fault in faults:
            size = scaled(args.cycles, args.scale)
            for store in stores:
                home = Path(tempfile.mkdtemp(prefix=f"redeem-faults-{fault}-{store}-"))
                with setup(fault, store, found, home) as chosen:
                    if isinstance(chosen, str):
                        print(f"skipped {fault} on {store}: {chosen}")
                        continue
                    report = await run_fault(chosen[0], size, chosen[1])
                print(report.table(), flush=True)
                reports.append(report)
    failed = [r.title for r in reports if not r.ok]
    print(f"{len(reports)} runs; {len(failed)} broke a guarantee: {', '.join(failed) or 'none'}")
    return not failed


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--cycles", type=int, default=2, help="cycles of load per run")
    parser.add_argument("--store", choices=[*STORES, "all"], default="all")
    parser.add_argument("--fault", choices=[*FAULTS, "all"], default="all")
    parser.add_argument("--scale", type=int, default=1, help="multiplies the load per cycle")
    return parser.parse_args()


if __name__ == "__main__":
    raise SystemExit(0 if asyncio.run(main(arguments())) else 1)
