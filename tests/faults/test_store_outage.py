"""The store unreachable for a few seconds under load: MongoDB stopped and started on
its data, or the embedded store's file held locked by another connection."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from bench.faults.harness import run_fault
from bench.faults.injectors import MongoOutage, SqliteLock
from bench.support import servers
from tests.faults.conftest import SMALL, MakeCluster, shown

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


@pytest.fixture
def own_mongodb() -> Iterator[servers.Secantus]:
    """A SecantusDB only this test uses, as it stops it."""
    if os.environ.get("REDEEM_TEST_MONGODB_URL"):
        reason = "stops its MongoDB: needs a SecantusDB of its own, not REDEEM_TEST_MONGODB_URL"
        print(reason)
        pytest.skip(reason)
    server = servers.Secantus.start()
    yield server
    server.close()


async def test_mongodb_stopped_and_started_under_load_breaks_no_guarantee(
    make_cluster: MakeCluster, own_mongodb: servers.Secantus
) -> None:
    cluster = make_cluster("mongodb", mongodb_url=own_mongodb.url)
    report = await run_fault(cluster, SMALL, MongoOutage(own_mongodb))
    table = shown(report)
    assert report.ok, table


async def test_the_sqlite_file_locked_under_load_breaks_no_guarantee(
    make_cluster: MakeCluster,
) -> None:
    report = await run_fault(make_cluster("embedded"), SMALL, SqliteLock())
    table = shown(report)
    assert report.ok, table
