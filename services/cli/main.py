"""`redeem`: run the system, load it with the demo, manage inventories, and prepare a
deployment's store and broker."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.panel import Panel

from services.cli import demo as demo_module
from services.cli import local, manage
from services.cli import up as up_module
from services.cli.errors import CliError
from services.cli.keys import keys as keys_app
from services.cli.local import RunningSystem, admin_key
from services.cli.lockouts import lockouts
from shared.domain.access import digest_of
from shared.runtime.process import adapters
from shared.runtime.settings import Settings
from shared.runtime.startup import settings_for

app = typer.Typer(help="Redemption codes: run the service and work with it.", add_completion=False)
app.add_typer(manage.campaigns, name="campaigns")
app.add_typer(lockouts, name="lockouts")
app.add_typer(keys_app, name="keys")
app.command("inventory")(manage.inventory)
app.command("import")(manage.import_codes)
app.command("export")(manage.export_codes)
app.command("generate")(manage.generate)
console = Console()


def run() -> None:
    """The console script: every CliError is one line on stderr and exit status 1."""
    try:
        app()
    except CliError as error:
        Console(stderr=True).print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        sys.exit(1)


@app.command()
def up(
    workers: Annotated[int, typer.Option(min=1, max=32, help="worker processes")] = 2,
    demo: Annotated[bool, typer.Option(help="run `redeem demo` once the system is up")] = False,
    keep_running: Annotated[
        bool | None,
        typer.Option(help="after --demo, keep serving (default: only on a terminal)"),
    ] = None,
) -> None:
    """Start intake, workers and results; Ctrl-C stops them."""
    settings = Settings()
    up_module.ensure_broker(settings.rabbitmq_url, console)
    key = admin_key(settings.data_dir)
    # As digests: the keys themselves are in the data directory, not in the processes'
    # environment; the partner's answers its own handler's attempts only.
    partner = local.secret(settings.data_dir, local.PARTNER_KEY_FILE)
    partner_entry = f"{digest_of(partner)}=fulfillment|handlers={up_module.PARTNER_HANDLER}"
    keys = ";".join(filter(None, [settings.api_keys, f"{digest_of(key)}=admin", partner_entry]))
    logs = settings.data_dir.resolve() / "logs"
    supervisor = up_module.Supervisor(up_module.children(settings, workers, keys, logs), console)
    supervisor.start()
    intake = supervisor.children[0]
    store = "MongoDB " + settings.mongodb_db if settings.mongodb_url else str(settings.sqlite_path)
    url = f"http://127.0.0.1:{intake.port}"
    record = functools.partial(RunningSystem, url, os.getpid(), str(logs), store)
    record(supervisor.pids()).save(settings.data_dir)
    console.print(
        Panel.fit(
            f"[bold]{url}[/]  (OpenAPI: {url}/docs)\nadmin key: [bold]{key}[/]\n"
            f"console: {url}/console (sign in with the admin key)\n"
            f"store: {store}\nlogs: {logs}\n{workers} worker(s); Ctrl-C stops everything",
            title="redemption codes are up",
        )
    )
    status = 0
    try:
        if demo:
            ok = asyncio.run(demo_module.run_demo(url, key, settings.rabbitmq_url, console))
            status = 0 if ok else 1
            if not (sys.stdin.isatty() if keep_running is None else keep_running):
                return
        _serve(supervisor, lambda: record(supervisor.pids()).save(settings.data_dir))
    finally:
        supervisor.stop()
        RunningSystem.forget(settings.data_dir)
        console.print("stopped")
        if status:
            raise typer.Exit(status)


def _serve(supervisor: up_module.Supervisor, restarted: Callable[[], None]) -> None:
    stop = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop:
        if supervisor.watch_once():
            restarted()
        time.sleep(0.5)


@app.command()
def prepare() -> None:
    """Create the store's tables and indexes and declare the broker's exchanges and queues,
    then exit: what every service does at start, run once before them in a deployment."""
    settings = settings_for("prepare")
    asyncio.run(_prepare(settings))
    console.print("store and broker prepared")


async def _prepare(settings: Settings) -> None:
    async with adapters(settings, "prepare"):
        pass


@app.command()
def demo(
    codes: Annotated[int, typer.Option(min=2_000, help="codes in the demo campaign")] = 10_000,
) -> None:
    """Load the running system with redemptions and check its invariants."""
    settings = Settings()
    system = RunningSystem.find(settings.data_dir)
    key = admin_key(settings.data_dir)
    plan = demo_module.Plan(codes=codes)
    ok = asyncio.run(demo_module.run_demo(system.url, key, settings.rabbitmq_url, console, plan))
    if not ok:
        raise typer.Exit(1)


if __name__ == "__main__":
    run()
