"""The MongoDB and RabbitMQ a test or bench run uses, found once per session or run.

MongoDB: `REDEEM_TEST_MONGODB_URL` if set; else a testcontainers MongoDB when
a Docker engine answers; else a SecantusDB server (a MongoDB wire-protocol
surrogate, test-only) started on a free local port.

RabbitMQ: `REDEEM_TEST_RABBITMQ_URL` if set; else a testcontainers RabbitMQ
when a Docker engine answers; else the local broker on 127.0.0.1:5672.
Each test gets a virtual host of its own on it, so no run or test sees
another's messages. A missing server fails the run; nothing is skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

LOCAL_RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"


class MissingServer(RuntimeError):
    """A server the tests need is not there."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def answers(host: str, port: int, timeout_s: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not answers(host, port, 0.5):
        if time.monotonic() > deadline:
            raise MissingServer(f"{what} did not answer on {host}:{port} within {timeout_s} s")
        time.sleep(0.1)


def docker_answers() -> bool:
    """Whether a Docker engine answers `GET /_ping` (on DOCKER_HOST or its local socket)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    parts = urllib.parse.urlsplit(host)
    try:
        if parts.scheme == "unix":
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.settimeout(3)
            try:
                conn.connect(parts.path)
            except OSError:
                conn.close()
                raise
        else:
            conn = socket.create_connection((parts.hostname or "", parts.port or 2375), 3)
    except OSError:
        return False
    with conn:
        try:
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in conn.recv(256)
        except OSError:
            return False


@dataclass
class Mongo:
    url: str
    kind: str
    _stop: list[object] = field(default_factory=list)


@contextlib.contextmanager
def mongodb() -> Iterator[Mongo]:
    given = os.environ.get("REDEEM_TEST_MONGODB_URL")
    if given:
        yield Mongo(given, f"MongoDB from REDEEM_TEST_MONGODB_URL ({_redact(given)})")
        return
    if docker_answers():
        from testcontainers.mongodb import MongoDbContainer

        with MongoDbContainer("mongo:8") as container:
            yield Mongo(container.get_connection_url(), "MongoDB 8 in a testcontainer")
        return
    yield from _secantus()


@contextlib.contextmanager
def mongodb_url(store: str, say: Callable[[str], None]) -> Iterator[str | None]:
    """The MongoDB URL a benchmark's `--store mongodb` runs on (`say` names which one);
    None for `--store embedded`."""
    if store == "embedded":
        yield None
        return
    with mongodb() as mongo:
        say(f"MongoDB: {mongo.kind}")
        yield mongo.url


def _secantus() -> Iterator[Mongo]:
    server = Secantus.start()
    try:
        kind = f"SecantusDB surrogate on 127.0.0.1:{server.port} (no MongoDB URL or Docker)"
        yield Mongo(server.url, kind)
    finally:
        server.close()


@dataclass
class Secantus:
    """A SecantusDB server of our own: stopped and started again on its port and data."""

    port: int
    home: Path
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls) -> Secantus:
        server = cls(free_port(), Path(tempfile.mkdtemp(prefix="redeem-secantus-")))
        server.resume()
        return server

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def resume(self) -> None:
        """Start the server (again) on the same port and data directory."""
        with (self.home / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "secantus",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--storage-path",
                    str(self.home / "data"),
                    "--log-level",
                    "WARNING",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port("127.0.0.1", self.port, 60, "SecantusDB")
        except MissingServer:
            self.pause()
            raise

    def pause(self) -> None:
        """Stop the server; its data stays for `resume()`."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(20)
        self.process = None

    def close(self) -> None:
        self.pause()
        shutil.rmtree(self.home, ignore_errors=True)


@dataclass
class Rabbit:
    """A broker, and the virtual hosts this run made on it."""

    url: str
    kind: str
    admin: VhostAdmin
    local: bool = False  # the broker on this machine, which `rabbitmqctl` controls
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    vhosts: list[str] = field(default_factory=list)

    def new_vhost(self) -> str:
        """A fresh virtual host; returns the AMQP URL that names it."""
        name = f"redeem-test-{self.run_id}-{len(self.vhosts)}"
        self.admin.create(name)
        self.vhosts.append(name)
        parts = urllib.parse.urlsplit(self.url)
        return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(name, "")))

    def drop_vhost(self, url: str) -> None:
        """Delete the virtual host `url` names, with what was left in it: queues add up
        on a broker (each quorum queue is a Raft group), so a run keeps few alive."""
        name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.lstrip("/"))
        if name in self.vhosts:
            self.vhosts.remove(name)
            with contextlib.suppress(Exception):
                self.admin.delete(name)

    def drop_vhosts(self) -> None:
        for name in self.vhosts:
            with contextlib.suppress(Exception):
                self.admin.delete(name)
        self.vhosts.clear()


@contextlib.contextmanager
def rabbitmq() -> Iterator[Rabbit]:
    given = os.environ.get("REDEEM_TEST_RABBITMQ_URL")
    if given:
        kind = f"RabbitMQ from REDEEM_TEST_RABBITMQ_URL ({_redact(given)})"
        admin = _vhosts(given)
        # On this machine, `rabbitmqctl` (RABBITMQ_NODENAME naming the node) controls it.
        rabbit = Rabbit(given, kind, admin, isinstance(admin, _RabbitCtl))
    elif docker_answers():
        yield from _rabbit_container()
        return
    else:
        if not answers("127.0.0.1", 5672):
            raise MissingServer(
                "RabbitMQ does not answer on 127.0.0.1:5672: start it (rabbitmq-server -detached)"
                " or set REDEEM_TEST_RABBITMQ_URL"
            )
        rabbit = Rabbit(LOCAL_RABBITMQ, "local RabbitMQ on 127.0.0.1:5672", _RabbitCtl(), True)
    try:
        yield rabbit
    finally:
        rabbit.drop_vhosts()


def _rabbit_container() -> Iterator[Rabbit]:
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:4-management") as container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(5672)
        url = f"amqp://guest:guest@{host}:{port}/"
        yield Rabbit(url, "RabbitMQ 4 in a testcontainer", _RabbitCtl(container.exec))


class VhostAdmin(Protocol):
    def create(self, name: str) -> None: ...

    def delete(self, name: str) -> None: ...


def _local_ctl(args: list[str]) -> object:
    return subprocess.run(args, check=True, capture_output=True, timeout=60)


class _RabbitCtl:
    """Virtual hosts through `rabbitmqctl`, on this machine or in a container."""

    def __init__(self, run: Callable[[list[str]], object] = _local_ctl) -> None:
        self._runner = run

    def create(self, name: str) -> None:
        self._run("add_vhost", name)
        self._run("set_permissions", "-p", name, "guest", ".*", ".*", ".*")

    def delete(self, name: str) -> None:
        self._run("delete_vhost", name)

    def _run(self, *args: str) -> None:
        self._runner(["rabbitmqctl", "-q", *args])


class _ManagementApi:
    """Virtual hosts through the management HTTP API, for a broker elsewhere."""

    def __init__(self, amqp_url: str) -> None:
        parts = urllib.parse.urlsplit(amqp_url)
        port = int(os.environ.get("REDEEM_TEST_RABBITMQ_MANAGEMENT_PORT", "15672"))
        self._base = f"http://{parts.hostname}:{port}/api"
        self._user = parts.username or "guest"
        password = parts.password or "guest"
        manager = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        manager.add_password(None, self._base, self._user, password)
        self._open = urllib.request.build_opener(urllib.request.HTTPBasicAuthHandler(manager)).open

    def create(self, name: str) -> None:
        vhost = urllib.parse.quote(name, "")
        self._call("PUT", f"/vhosts/{vhost}", b"{}")
        body = b'{"configure":".*","write":".*","read":".*"}'
        self._call("PUT", f"/permissions/{vhost}/{urllib.parse.quote(self._user, '')}", body)

    def delete(self, name: str) -> None:
        self._call("DELETE", f"/vhosts/{urllib.parse.quote(name, '')}", None)

    def _call(self, method: str, path: str, body: bytes | None) -> None:
        request = urllib.request.Request(self._base + path, data=body, method=method)
        request.add_header("content-type", "application/json")
        self._open(request, timeout=30).close()


def _vhosts(amqp_url: str) -> VhostAdmin:
    host = urllib.parse.urlsplit(amqp_url).hostname
    if host in ("127.0.0.1", "localhost") and shutil.which("rabbitmqctl"):
        return _RabbitCtl()
    return _ManagementApi(amqp_url)


def _redact(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url
