"""The services as separate OS processes, started from their real entrypoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bench.support.servers import free_port

SERVICES = ("intake", "worker", "results")
# Every handler's webhook keys, oldest first: workers sign with the last, partners
# verify by the key id a request names.
WEBHOOK_KEYS = {"test-1": "test-webhook-secret-1", "test-2": "test-webhook-secret-2"}
WEBHOOK_SECRETS = "*=" + ",".join(f"{key_id}:{secret}" for key_id, secret in WEBHOOK_KEYS.items())
# The tests' partners listen on loopback, which webhooks may reach only when allow-listed,
# as an operator allow-lists a private test partner's network.
WEBHOOK_ALLOWED_NETWORKS = "127.0.0.0/8,::1/128"
# Keys the hashed codes of campaigns with hashCodes (the same for every process).
CODE_SECRET = "test-code-secret"
# The keys the tests and the fault lab start their systems with.
ADMIN_KEY = "test-admin-key"
REDEEM_KEY = "test-redeem-key"
PARTNER_KEY = "test-partner-key"  # the partner simulator's, for its async responses
API_KEYS = f"{ADMIN_KEY}=admin;{REDEEM_KEY}=redeem;{PARTNER_KEY}=fulfillment"
# Names redemptions (the same for every intake, or idempotency would not hold across them).
REDEMPTION_ID_SECRET = "test-redemption-id-secret"


@dataclass
class Service:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as a crash would leave things."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@dataclass
class System:
    """Intake, workers and results against one store database and one vhost."""

    env: dict[str, str]
    logs: Path
    services: list[Service] = field(default_factory=list)

    def start(
        self, name: str, *, port: int | None = None, ready: bool = True, **env: str
    ) -> Service:
        """Start `services.<name>`, with `env` added to the system's environment.

        `port`: the one to listen on (a restart keeps its predecessor's); `ready`:
        wait until it answers `/readyz`."""
        port = port or free_port()
        log_path = self.logs / f"{name}-{len(self.services)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                env={**self.env, **env, "REDEEM_HTTP_PORT": str(port)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        service = Service(name, port, process, log_path, dict(env))
        self.services.append(service)
        if ready:
            self._wait_ready(service)
        return service

    def start_all(self, *names: str) -> list[Service]:
        """Start each of `services.<name>` at once (as `redeem up` does), then wait until
        every one is ready."""
        started = [self.start(name, ready=False) for name in names]
        for service in started:
            self._wait_ready(service)
        return started

    def restart(
        self, service: Service, env: dict[str, str] | None = None, *, ready: bool = True
    ) -> Service:
        """A successor of `service` (stopped first if alive) on its port, with `env` added
        to the system's environment (its predecessor's additions when None)."""
        if service.alive:
            service.process.terminate()
            try:
                service.process.wait(15)
            except subprocess.TimeoutExpired:
                service.kill()
        extra = service.extra if env is None else env
        return self.start(service.name, port=service.port, ready=ready, **extra)

    def _wait_ready(self, service: Service, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if service.process.poll() is not None:
                raise RuntimeError(f"{service.name} exited:\n{service.log()}")
            try:
                with urllib.request.urlopen(service.url + "/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{service.name} not ready in {timeout_s} s:\n{service.log()}")

    def stop(self) -> None:
        for service in self.services:
            if service.process.poll() is None:
                service.process.terminate()
        for service in self.services:
            try:
                service.process.wait(15)
            except subprocess.TimeoutExpired:
                service.kill()

    def dump_logs(self) -> str:
        return "\n".join(f"--- {s.name} ---\n{s.log()[-4000:]}" for s in self.services)


def system_env(
    *, rabbitmq_url: str, mongodb_url: str, db: str, api_keys: str, data_dir: Path | None = None
) -> dict[str, str]:
    """The environment of a system on MongoDB at `mongodb_url`, or, when it is empty, on
    the embedded store in `data_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDEEM_")}
    if mongodb_url:
        env["REDEEM_MONGODB_URL"] = mongodb_url
    if data_dir is not None:
        env["REDEEM_DATA_DIR"] = str(data_dir)
    env.update(
        REDEEM_RABBITMQ_URL=rabbitmq_url,
        REDEEM_MONGODB_DB=db,
        REDEEM_API_KEYS=api_keys,
        REDEEM_REDEMPTION_ID_SECRET=REDEMPTION_ID_SECRET,
        REDEEM_PARTNER_API_KEY=PARTNER_KEY,
        REDEEM_WEBHOOK_SECRETS=WEBHOOK_SECRETS,
        REDEEM_WEBHOOK_ALLOWED_NETWORKS=WEBHOOK_ALLOWED_NETWORKS,
        REDEEM_WEBHOOK_TIMEOUT_S="2",
        REDEEM_CODE_SECRET=CODE_SECRET,
        REDEEM_LOG_FORMAT="json",
        REDEEM_CAMPAIGN_CACHE_TTL_S="1",
        PYTHONUNBUFFERED="1",
    )
    return env
