"""Commands for operators: the scopes locked out for failed redemptions, and lifting them."""

from __future__ import annotations

from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from services.cli.client import connect

console = Console()
lockouts = typer.Typer(help="See and lift lockouts for failed redemptions.", no_args_is_help=True)


@lockouts.command("list")
def list_lockouts() -> None:
    """Every scope locked out now (user:, key:, address:, campaign:)."""
    table = Table("scope", "failures", "limit", "retry after")
    params: dict[str, Any] = {"limit": 500}
    with connect() as api:
        while True:
            page = api.call("GET", "/v1/lockouts", params=params)
            for item in page["items"]:
                limit = item["limit"]
                table.add_row(
                    item["scope"],
                    str(item["failures"]),
                    f"{limit['failures']} in {limit['windowSeconds']} s",
                    f"{item['retryAfterSeconds']} s",
                )
            if page["after"] is None:
                break
            params["after"] = page["after"]
    console.print(table)


@lockouts.command("clear")
def clear_lockout(scope: str) -> None:
    """Lift the lockout of SCOPE, e.g. user:alice: its failed redemptions are forgotten."""
    with connect() as api:
        cleared = api.call("DELETE", f"/v1/lockouts/{scope}")
    console.print(f"cleared {scope}" if cleared["cleared"] else f"{scope} was not locked out")
