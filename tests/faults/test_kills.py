"""Workers, the results relay and the intake SIGKILLed at random under steady load."""

from __future__ import annotations

import pytest

from bench.faults.harness import run_fault
from bench.faults.injectors import Kills
from tests.faults.conftest import SMALL, MakeCluster, shown

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


async def test_random_sigkills_break_no_guarantee(
    store_kind: str, make_cluster: MakeCluster
) -> None:
    report = await run_fault(make_cluster(store_kind), SMALL, Kills(after_load=3))
    table = shown(report)
    assert report.ok, table
