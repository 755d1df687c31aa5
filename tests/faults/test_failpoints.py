"""Each failpoint in turn: the process dies (or raises) there, is restarted, and the
system, once settled, has kept every guarantee."""

from __future__ import annotations

import dataclasses

import pytest

from bench.faults.harness import run_fault
from bench.faults.injectors import EACH_KILLING, GIVE_UP_ENV, GIVE_UP_RAISING, Failpoints
from tests.faults.conftest import SMALL, TINY, MakeCluster, shown

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.timeout(300)]


async def test_a_process_killed_at_each_failpoint_in_turn_breaks_no_guarantee(
    store_kind: str, make_cluster: MakeCluster
) -> None:
    size = dataclasses.replace(TINY, cycles=len(EACH_KILLING))
    report = await run_fault(make_cluster(store_kind), size, Failpoints(EACH_KILLING))
    table = shown(report)
    assert report.ok, table


async def test_a_give_up_that_raises_still_ends_its_redemption(
    store_kind: str, make_cluster: MakeCluster
) -> None:
    """`in-give-up` fires only at the delivery limit: one delivery (REDEEM_MAX_DELIVERIES=1),
    and a claim that raises now and then, so that redeliveries are given up."""
    size = dataclasses.replace(SMALL, settle_s=10.0)
    fault = Failpoints((GIVE_UP_RAISING,), cycle_deadline_s=3.0, name="in-give-up")
    report = await run_fault(make_cluster(store_kind, **GIVE_UP_ENV), size, fault)
    table = shown(report)
    assert report.ok, table
