"""The `redeem` command line and the README's run command, on a real broker."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest
from pymongo import AsyncMongoClient

from bench.support.servers import free_port
from shared import topology
from shared.adapters.documents import Doc
from shared.domain.access import ApiKeys, digest_of

# The demo loads a whole system for a minute or two on this machine's two cores.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]
ROOT = Path(__file__).resolve().parents[2]
REDEEM = str(Path(sys.executable).parent / "redeem")
INVARIANTS = (
    "every request got the outcome it should",
    "every accepted request ended",
    "no code redeemed twice",
    "one event per change",
)


@pytest.fixture
def cli_env(amqp_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDEEM_")}
    env.update(
        REDEEM_RABBITMQ_URL=amqp_url,
        REDEEM_DATA_DIR=str(tmp_path / "data"),
        REDEEM_HTTP_PORT=str(free_port()),
        COLUMNS="120",
    )
    return env


def assert_green(output: str) -> None:
    for invariant in INVARIANTS:
        assert f"✓ {invariant}" in output, output[-3000:]
    assert "✗" not in output and "Traceback" not in output, output[-3000:]


def test_the_readme_run_command_ends_with_the_demo_summary(cli_env: dict[str, str]) -> None:
    done = subprocess.run(
        ["./dev", "up"],
        cwd=ROOT,
        env=cli_env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Outcomes" in done.stdout and "per second" in done.stdout
    assert_green(done.stdout)
    store = Path(cli_env["REDEEM_DATA_DIR"]) / "redeem.sqlite3"
    assert store.exists(), "the embedded store held the data"


@pytest.fixture
def system_up(cli_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    log = (tmp_path / "up.log").open("w")
    up = subprocess.Popen(
        [REDEEM, "up", "--workers", "2"],
        env=cli_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    record = Path(cli_env["REDEEM_DATA_DIR"]) / "system.json"
    deadline = time.monotonic() + 90
    while not record.exists():
        assert up.poll() is None and time.monotonic() < deadline, (tmp_path / "up.log").read_text()
        time.sleep(0.2)
    yield up
    up.send_signal(signal.SIGINT)
    assert up.wait(60) == 0
    log.close()
    assert not record.exists(), "redeem up forgets the system it stopped"


def test_a_worker_killed_mid_demo_leaves_the_invariants_intact(
    system_up: subprocess.Popen[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    demo_log = tmp_path / "demo.log"
    with demo_log.open("w") as out:
        demo = subprocess.Popen(
            [REDEEM, "demo"], env=cli_env, stdout=out, stderr=subprocess.STDOUT, text=True
        )
        try:
            deadline = time.monotonic() + 300
            while "Sending" not in demo_log.read_text():
                assert demo.poll() is None and time.monotonic() < deadline, demo_log.read_text()
                time.sleep(0.2)
            time.sleep(1.0)  # well into the load
            record = json.loads((Path(cli_env["REDEEM_DATA_DIR"]) / "system.json").read_text())
            os.kill(record["processes"]["worker-1"], signal.SIGKILL)
            assert demo.wait(600) == 0, demo_log.read_text()[-3000:]
        finally:
            if demo.poll() is None:
                demo.kill()
            demo.wait()
    assert_green(demo_log.read_text())
    up_log = tmp_path / "up.log"
    assert "worker-1 exited (-9); restarting it" in up_log.read_text()


def test_the_cli_explains_bad_input_in_one_line(cli_env: dict[str, str], tmp_path: Path) -> None:
    no_system = subprocess.run([REDEEM, "demo"], env=cli_env, capture_output=True, text=True)
    assert no_system.returncode == 1
    assert no_system.stderr.strip().startswith("error: no running system found")
    assert len(no_system.stderr.strip().splitlines()) == 1

    no_broker = {**cli_env, "REDEEM_RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/"}
    refused = subprocess.run(
        [REDEEM, "up"], env=no_broker, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith("error: RabbitMQ does not answer")
    assert "Traceback" not in refused.stderr + refused.stdout


def redeem(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([REDEEM, *args], env=env, capture_output=True, text=True, timeout=300)


def test_operators_manage_inventories_from_the_command_line(
    system_up: subprocess.Popen[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**cli_env, "COLUMNS": "200"}
    assert redeem(env, "campaigns", "create", "cards").returncode == 0
    created = redeem(
        env, "campaigns", "create", "fans", "--scan-code", "FANS-1", "--max-redemptions", "5"
    )
    assert "created fans (MULTI)" in created.stdout
    slow = redeem(
        env,
        *("campaigns", "create", "parcels", "--handler", "simulated-partner", "--async"),
        *("--timeout", "600", "--max-retries", "3"),
    )
    assert slow.returncode == 0, slow.stderr
    shown = json.loads(redeem(env, "campaigns", "show", "parcels").stdout)
    assert (shown["async"], shown["timeout"], shown["maxRetries"]) == (True, 600, 3)
    listed = redeem(env, "campaigns", "list")
    assert "cards" in listed.stdout and "FANS-1" in listed.stdout and "0/5" in listed.stdout

    generated = tmp_path / "generated.csv"
    made = redeem(
        env, "generate", "cards", "2500", "-o", str(generated), "--check", "--state", "Available"
    )
    assert made.returncode == 0, made.stderr
    codes = [line.split(",")[0] for line in generated.read_text().splitlines()[1:]]
    assert len(codes) == len(set(codes)) == 2500

    inventory_file = tmp_path / "inventory.csv"
    inventory_file.write_text("scanCode,codeState\nIMPORTED-1,Inactive\nBAD$,Inactive\n")
    imported = redeem(env, "import", "cards", str(inventory_file))
    assert imported.returncode == 0, imported.stderr
    assert "2 rows: 1 added, 0 unchanged, 1 rejected" in imported.stdout
    assert "40569" in imported.stdout

    counted = redeem(env, "inventory", "cards")
    assert "2,500" in counted.stdout and "2,501" in counted.stdout

    exported = tmp_path / "export.ndjson"
    assert redeem(env, "export", "cards", "-o", str(exported), "--format", "ndjson").returncode == 0
    assert len(exported.read_text().splitlines()) == 2501


def test_cli_mistakes_are_one_line_errors(
    system_up: subprocess.Popen[str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    for args in (
        ("inventory", "no-such-campaign"),
        ("import", "no-such-campaign", str(tmp_path / "missing.csv")),
        ("export", "no-such-campaign", "-o", str(tmp_path / "x.csv")),
        ("generate", "no-such-campaign", "10", "-o", str(tmp_path / "g.csv")),
    ):
        done = redeem(cli_env, *args)
        assert done.returncode == 1, args
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        assert "Traceback" not in done.stderr + done.stdout
    bad = tmp_path / "bad.csv"
    bad.write_text("no,header\n1,2\n")
    assert redeem(cli_env, "campaigns", "create", "real").returncode == 0
    refused = redeem(cli_env, "import", "real", str(bad))
    assert refused.returncode == 1
    assert "scanCode" in refused.stderr and "Traceback" not in refused.stderr


def test_redeem_up_keeps_its_data_directory_for_its_owner_only_and_keys_as_digests(
    system_up: subprocess.Popen[str], cli_env: dict[str, str]
) -> None:
    data = Path(cli_env["REDEEM_DATA_DIR"])
    record = json.loads((data / "system.json").read_text())
    private = [data, data / "logs", *data.iterdir(), *(data / "logs").iterdir()]
    modes = {str(p.relative_to(data)): stat.S_IMODE(p.stat().st_mode) for p in private}
    assert {"redeem.sqlite3-wal", "admin-key", "partner-key", "logs/intake.log"} <= set(modes)
    assert all(m == (0o700 if (data / p).is_dir() else 0o600) for p, m in modes.items()), modes
    environ = Path(f"/proc/{record['processes']['intake']}/environ").read_bytes()
    for key in ("admin-key", "partner-key"):  # the processes have their digests only
        assert (data / key).read_text().strip().encode() not in environ


def test_redeem_keys_writes_a_key_as_its_digest(cli_env: dict[str, str]) -> None:
    digest = subprocess.run(
        [REDEEM, "keys", "digest"], env=cli_env, input="s3cret\n", capture_output=True, text=True
    )
    assert digest.stdout.strip() == digest_of("s3cret")
    made = redeem(cli_env, "keys", "new", "fulfillment", "--handlers", "acme")
    key, entry = (line.split(":", 1)[1].strip() for line in made.stdout.splitlines())
    assert entry == f"{digest_of(key)}=fulfillment|handlers=acme"
    assert ApiKeys.parse(entry).grant(key) is not None


async def test_prepare_makes_the_stores_indexes_and_the_brokers_queues_then_exits(
    each_store_env: dict[str, str], db_name: str, mongo_client: AsyncMongoClient[Doc]
) -> None:
    done = await asyncio.to_thread(
        subprocess.run,
        [REDEEM, "prepare"],
        env=each_store_env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "store and broker prepared" in done.stdout
    connection = await aio_pika.connect(each_store_env["REDEEM_RABBITMQ_URL"])
    async with connection:
        channel = await connection.channel()
        for queue in (topology.WORK_QUEUE, topology.INTAKE_QUEUE, topology.DEAD_LETTER_QUEUE):
            await channel.declare_queue(queue, passive=True)  # raises if it is not there
    if each_store_env.get("REDEEM_MONGODB_URL"):
        indexes = await mongo_client[db_name][topology.CODES].index_information()
        assert len(indexes) > 1  # beside _id's
    else:
        path = Path(each_store_env["REDEEM_DATA_DIR"]) / "redeem.sqlite3"
        with sqlite3.connect(path) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        conn.close()
        assert {"codes", "redemptions", "outbox", "codes_by_key"} <= tables


def test_prepare_refuses_settings_it_cannot_start_with(cli_env: dict[str, str]) -> None:
    env = cli_env | {"REDEEM_API_KEYS": "dev-admin-key=admin", "REDEEM_ENVIRONMENT": "production"}

    done = subprocess.run([REDEEM, "prepare"], env=env, capture_output=True, text=True, timeout=60)

    assert done.returncode == 2
    assert "prepare not started: " in done.stderr and "REDEEM_API_KEYS" in done.stderr
