"""A system of our own per test, on the store the test names, in its own virtual host."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bench.faults.checker import Report
from bench.faults.harness import STORES, Cluster, Size
from bench.support import servers

# Small: each test a minute or less on a 2-core machine.
SMALL = Size(cycles=1)
# Smaller still, for a cycle per failpoint: some 25 redemptions a cycle.
TINY = Size(
    personal_codes=3,
    racers=3,
    local_codes=2,
    local_racers=2,
    shared_max=3,
    shared_users=5,
    partner_codes=3,
    duplicates=3,
)

MakeCluster = Callable[..., Cluster]


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_cluster(
    request: pytest.FixtureRequest, rabbit: servers.Rabbit, tmp_path: Path
) -> MakeCluster:
    """`make_cluster(store, mongodb_url=None, **env)`: a cluster not yet started; MongoDB
    is the session's unless `mongodb_url` names another."""

    def make(store: str, mongodb_url: str | None = None, **env: str) -> Cluster:
        if store == "mongodb" and mongodb_url is None:
            mongo: servers.Mongo = request.getfixturevalue("mongo")
            mongodb_url = mongo.url
        return Cluster.create(
            store=store,
            amqp_url=rabbit.new_vhost(),
            mongodb_url=mongodb_url,
            home=tmp_path,
            workers=SMALL.workers,
            env=env,
        )

    return make


def shown(report: Report) -> str:
    """The run's table, printed whatever the verdict."""
    table = report.table()
    print(table)
    return table
