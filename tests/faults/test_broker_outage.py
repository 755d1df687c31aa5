"""RabbitMQ's application stopped and started under load: every service reconnects."""

from __future__ import annotations

import pytest

from bench.faults.harness import run_fault
from bench.faults.injectors import BrokerOutage
from bench.support import servers
from tests.faults.conftest import SMALL, MakeCluster, shown

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


async def test_a_broker_restart_under_load_breaks_no_guarantee(
    store_kind: str, make_cluster: MakeCluster, rabbit: servers.Rabbit
) -> None:
    if not rabbit.local:
        reason = f"stops the broker's application: only the local one, not {rabbit.kind}"
        print(reason)
        pytest.skip(reason)
    report = await run_fault(make_cluster(store_kind), SMALL, BrokerOutage())
    table = shown(report)
    assert report.ok, table
