"""A running system for each store, as the fuzzers attack it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.support import servers
from bench.support.processes import API_KEYS, System, system_env
from tests.conftest import MAX_DELIVERIES


@pytest.fixture(params=["mongodb", "embedded"])
def any_system(
    request: pytest.FixtureRequest, amqp_url: str, db_name: str, tmp_path: Path
) -> Iterator[System]:
    """Intake, worker and results on MongoDB, then on the embedded store; an outcome is
    waited for a second at most, so that no fuzzed `?wait=` holds the run up."""
    mongo_url = ""
    if request.param == "mongodb":
        mongo: servers.Mongo = request.getfixturevalue("mongo")
        mongo_url = mongo.url
    env = system_env(rabbitmq_url=amqp_url, mongodb_url=mongo_url, db=db_name, api_keys=API_KEYS)
    if not mongo_url:
        del env["REDEEM_MONGODB_URL"]
        env["REDEEM_DATA_DIR"] = str(tmp_path / "data")
    env["REDEEM_MAX_DELIVERIES"] = str(MAX_DELIVERIES)
    env["REDEEM_MAX_WAIT_S"] = "1"
    running = System(env, tmp_path)
    running.start_all("intake", "worker", "results")
    yield running
    running.stop()
    print(running.dump_logs())
