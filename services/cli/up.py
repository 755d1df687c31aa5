"""`redeem up`: intake, workers and results as supervised processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from services.cli import local
from services.cli.errors import CliError
from shared.adapters.files import open_private, private_dir
from shared.runtime import startup
from shared.runtime.settings import Settings

READY_TIMEOUT_S = 60.0
BROKER_START_TIMEOUT_S = 120.0


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def ensure_broker(url: str, console: Console) -> None:
    """Make sure RabbitMQ answers; start a local installed one if it does not."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5672
    if _answers(host, port):
        return
    # Only a broker of this machine on its standard port is ours to start.
    ours = host in ("127.0.0.1", "localhost", "::1") and port == 5672
    server = shutil.which("rabbitmq-server")
    if not (ours and server):
        raise CliError(
            f"RabbitMQ does not answer at {host}:{port}: start it (`rabbitmq-server -detached`,"
            " or `apt-get install rabbitmq-server`) or set REDEEM_RABBITMQ_URL"
        )
    console.print(f"RabbitMQ does not answer at {host}:{port}; starting the local one")
    subprocess.run([server, "-detached"], check=False, capture_output=True)
    deadline = time.monotonic() + BROKER_START_TIMEOUT_S
    while not _answers(host, port):
        if time.monotonic() > deadline:
            raise CliError(f"RabbitMQ did not start on {host}:{port} (see its logs)")
        time.sleep(0.5)


@dataclass
class Child:
    name: str
    port: int
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> None:
        with open(open_private(self.log_path), "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", f"services.{self.name.split('-')[0]}"],
                env={**self.env, "REDEEM_HTTP_PORT": str(self.port)},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the supervisor, which stops us in order
            )

    @property
    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def ready(self) -> bool:
        try:
            url = f"http://127.0.0.1:{self.port}/readyz"
            with urllib.request.urlopen(url, timeout=2) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False

    def tail(self, lines: int = 15) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


@dataclass
class Supervisor:
    """Starts the children, waits until they are ready, restarts any that dies."""

    children: list[Child]
    console: Console
    stopping: bool = field(default=False)

    def start(self) -> None:
        for child in self.children:
            child.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        for child in self.children:
            while not child.ready():
                if child.exited is not None or time.monotonic() > deadline:
                    self.stop()
                    raise CliError(f"{child.name} did not start; its log ends:\n{child.tail()}")
                time.sleep(0.1)

    def pids(self) -> dict[str, int]:
        return {c.name: c.process.pid for c in self.children if c.process}

    def watch_once(self) -> bool:
        """Restart the children that died; whether any did."""
        restarted = False
        for child in self.children:
            code = child.exited
            if code is not None and not self.stopping:
                child.restarts += 1
                self.console.print(
                    f"[yellow]{child.name} exited ({code}); restarting it[/]"
                    f" (log: {child.log_path})"
                )
                child.start()
                restarted = True
        return restarted

    def stop(self) -> None:
        self.stopping = True
        running = [c.process for c in self.children if c.process and c.process.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in running:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# The simulated fulfillment partner `redeem up` runs beside the system (and the demo uses).
PARTNER_HANDLER = "demo-partner"
PARTNER_ENV = {
    "REDEEM_PARTNER_HANDLER": PARTNER_HANDLER,
    "REDEEM_PARTNER_DELAY_S": "0.5",
    "REDEEM_PARTNER_FAILURE_RATE": "0.2",
}


def partner_env(settings: Settings) -> dict[str, str]:
    """The partner simulator's settings, with its key (`redeem up` lets it answer only
    its handler's attempts)."""
    return PARTNER_ENV | {
        "REDEEM_PARTNER_API_KEY": local.secret(settings.data_dir, local.PARTNER_KEY_FILE)
    }


def children(settings: Settings, workers: int, api_keys: str, logs: Path) -> list[Child]:
    """The processes of the system. Each gets every setting the operator gave (every
    `REDEEM_*` of this environment), but for those `up` decides itself."""
    env = dict(os.environ)
    env.update(
        REDEEM_RABBITMQ_URL=settings.rabbitmq_url,
        REDEEM_DATA_DIR=str(settings.data_dir.resolve()),
        REDEEM_API_KEYS=api_keys,
        REDEEM_ENVIRONMENT=settings.environment,
        # The intake's own file: an intake started alone on this data directory finds it.
        REDEEM_REDEMPTION_ID_SECRET=settings.redemption_id_secret
        or local.secret(settings.data_dir, startup.REDEMPTION_ID_SECRET_FILE),
        REDEEM_CONTEXT_SECRET=settings.context_secret
        or local.secret(settings.data_dir, local.CONTEXT_SECRET_FILE),
        # Console sessions outlive an intake restarted by `up`.
        REDEEM_CONSOLE_SECRET=settings.console_secret
        or local.secret(settings.data_dir, local.CONSOLE_SECRET_FILE),
        # A key for every handler, unless the operator gave each its own.
        REDEEM_WEBHOOK_SECRETS=settings.webhook_secrets
        or f"*=local:{local.secret(settings.data_dir, local.WEBHOOK_SECRET_FILE)}",
        REDEEM_WEBHOOK_ALLOWED_NETWORKS=settings.webhook_allowed_networks,
        REDEEM_LOG_FORMAT="json",
        REDEEM_LOG_LEVEL=settings.log_level,
        PYTHONUNBUFFERED="1",
    )
    if settings.mongodb_url:
        env.update(REDEEM_MONGODB_URL=settings.mongodb_url, REDEEM_MONGODB_DB=settings.mongodb_db)
    private_dir(logs)
    names = ["intake", *(f"worker-{n}" for n in range(1, workers + 1)), "results", "partner"]
    intake_port = settings.port_for(8080)
    if _answers("127.0.0.1", intake_port):
        raise CliError(f"port {intake_port} is taken: set REDEEM_HTTP_PORT to a free one")
    return [
        Child(
            name,
            intake_port if name == "intake" else free_port(),
            logs / f"{name}.log",
            env | partner_env(settings) if name == "partner" else env,
        )
        for name in names
    ]
