"""Servers once per session; a database and a virtual host per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import settings
from pymongo import AsyncMongoClient

from bench.support import servers
from bench.support.processes import API_KEYS, System, system_env
from shared.adapters.documents import Doc
from shared.adapters.mongodb import MongoStore
from shared.adapters.rabbitmq import Broker
from shared.adapters.sqlite import SqliteStore
from shared.ports import Store
from tests.fakes import FakeStore

USED: dict[str, str] = {}

# Property tests prove behaviour, not speed: no per-example deadline on a busy machine.
settings.register_profile("redeem", deadline=None)
settings.load_profile("redeem")
MAX_DELIVERIES = 5


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for what, kind in USED.items():
        terminalreporter.write_line(f"{what} used by this run: {kind}")


@pytest.fixture(scope="session")
def mongo() -> Iterator[servers.Mongo]:
    with servers.mongodb() as found:
        USED["MongoDB"] = found.kind
        yield found


@pytest.fixture(scope="session")
def rabbit() -> Iterator[servers.Rabbit]:
    with servers.rabbitmq() as found:
        USED["RabbitMQ"] = found.kind
        yield found


@pytest.fixture(scope="session")
async def mongo_client(mongo: servers.Mongo) -> AsyncIterator[AsyncMongoClient[Doc]]:
    # A server may close a connection idle for minutes (SecantusDB does after 5) while
    # broker-only tests run: the pool drops its idle connections well before that.
    client: AsyncMongoClient[Doc] = AsyncMongoClient(mongo.url, tz_aware=True, maxIdleTimeMS=60_000)
    await client.admin.command("ping")
    yield client
    await client.close()


@pytest.fixture
def db_name() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


@pytest.fixture
async def store(mongo_client: AsyncMongoClient[Doc], db_name: str) -> MongoStore:
    store = MongoStore(mongo_client[db_name])
    await store.prepare()
    return store


@pytest.fixture(params=["mongodb", "sqlite", "fake"])
async def any_store(
    request: pytest.FixtureRequest,
    mongo_client: AsyncMongoClient[Doc],
    db_name: str,
    tmp_path: Path,
) -> AsyncIterator[Store]:
    """Each store in turn, for the contract every store keeps (the unit tests' fake too)."""
    store: Store
    if request.param == "mongodb":
        store = MongoStore(mongo_client[db_name])
    elif request.param == "sqlite":
        store = SqliteStore(tmp_path / "store.sqlite3")
    else:
        store = FakeStore()
    await store.prepare()
    yield store
    await store.close()


@pytest.fixture
def amqp_url(rabbit: servers.Rabbit) -> Iterator[str]:
    url = rabbit.new_vhost()
    yield url
    rabbit.drop_vhost(url)


@pytest.fixture
async def broker(amqp_url: str) -> AsyncIterator[Broker]:
    broker = await Broker.connect(amqp_url, prefetch=32, publish_timeout_s=5.0, name="test")
    await broker.declare_topology(max_deliveries=MAX_DELIVERIES)
    yield broker
    await broker.close()


@pytest.fixture
def system(amqp_url: str, mongo: servers.Mongo, db_name: str, tmp_path: Path) -> Iterator[System]:
    env = system_env(rabbitmq_url=amqp_url, mongodb_url=mongo.url, db=db_name, api_keys=API_KEYS)
    env["REDEEM_MAX_DELIVERIES"] = str(MAX_DELIVERIES)
    with running(env, tmp_path) as started:
        yield started


@pytest.fixture(params=["mongodb", "embedded"])
def each_store_env(
    request: pytest.FixtureRequest, amqp_url: str, db_name: str, tmp_path: Path
) -> dict[str, str]:
    """A system's environment on MongoDB, then on the embedded store (in `tmp_path`)."""
    mongo_url = ""
    if request.param == "mongodb":
        mongo: servers.Mongo = request.getfixturevalue("mongo")
        mongo_url = mongo.url
    env = system_env(
        rabbitmq_url=amqp_url,
        mongodb_url=mongo_url,
        db=db_name,
        api_keys=API_KEYS,
        data_dir=tmp_path / "data",
    )
    env["REDEEM_MAX_DELIVERIES"] = str(MAX_DELIVERIES)
    return env


@contextmanager
def running(env: dict[str, str], logs: Path) -> Iterator[System]:
    """A system of `env`, stopped after, its logs printed (pytest shows them on failure)."""
    started = System(env, logs)
    try:
        yield started
    finally:
        started.stop()
        print(started.dump_logs())
