"""Commands for operators: API keys, made and written as digests for `REDEEM_API_KEYS`."""

from __future__ import annotations

import secrets
import sys
from typing import Annotated

import typer

from services.cli.errors import CliError
from shared.domain.access import ROLES, digest_of

keys = typer.Typer(help="Make API keys and their digests.", no_args_is_help=True)


@keys.command("digest")
def digest(
    key: Annotated[
        str | None, typer.Argument(help="the key; read from stdin when left out")
    ] = None,
) -> None:
    """Print `sha256:<hex>`, which `REDEEM_API_KEYS` takes in place of the key itself."""
    given = key if key is not None else sys.stdin.readline().rstrip("\r\n")
    if not given:
        raise CliError("no key given (as an argument, or one line on stdin)")
    typer.echo(digest_of(given))


@keys.command("new")
def new(
    roles: Annotated[str, typer.Argument(help="its roles: redeem, fulfillment, admin")],
    campaigns: Annotated[str | None, typer.Option(help="only these campaigns (A,B)")] = None,
    handlers: Annotated[str | None, typer.Option(help="only these handlers (H,I)")] = None,
) -> None:
    """Make a random key; print it (for its caller, once) and its `REDEEM_API_KEYS` entry."""
    if unknown := {r.strip() for r in roles.split(",")} - ROLES:
        raise CliError(f"unknown roles: {', '.join(sorted(unknown))}")
    key = secrets.token_urlsafe(32)
    limits = [f"|{name}={v}" for name, v in (("campaigns", campaigns), ("handlers", handlers)) if v]
    typer.echo(f"key:   {key}")
    typer.echo(f"entry: {digest_of(key)}={roles}{''.join(limits)}")
