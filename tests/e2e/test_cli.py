"""The `redeem` command line and the README's run command, on a real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import free_port

pytestmark = pytest.mark.e2e
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
        deadline = time.monotonic() + 300
        while "Sending" not in demo_log.read_text():
            assert demo.poll() is None and time.monotonic() < deadline, demo_log.read_text()
            time.sleep(0.2)
        time.sleep(1.0)  # well into the load
        record = json.loads((Path(cli_env["REDEEM_DATA_DIR"]) / "system.json").read_text())
        os.kill(record["processes"]["worker-1"], signal.SIGKILL)
        assert demo.wait(600) == 0, demo_log.read_text()[-3000:]
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
