"""Commands for operators: campaigns, inventory, import, export, generation."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn
from rich.table import Table

from services.cli.client import connect
from services.cli.errors import CliError

console = Console()
campaigns = typer.Typer(help="List, create and show campaigns.", no_args_is_help=True)
CHUNK = 256 * 1024


@campaigns.command("list")
def list_campaigns(
    use: Annotated[str | None, typer.Option(help="SINGLE or MULTI")] = None,
    rows: Annotated[int, typer.Option(min=1, max=500)] = 50,
) -> None:
    """Every campaign, page after page."""
    table = Table("codeType", "codeUseType", "scanCode", "redemptions", "disabled")
    params: dict[str, Any] = {"rowsPerPage": rows} | ({"codeUseType": use} if use else {})
    with connect() as api:
        page = api.call("GET", "/v1/campaigns", params=params)
        while True:
            for c in page["results"]["items"]:
                used = f"{c['redemptionCount']}/{c['maxRedemptions'] or '∞'}"
                table.add_row(
                    c["codeType"],
                    c["codeUseType"],
                    c["scanCode"] or "",
                    used if c["codeUseType"] == "MULTI" else "",
                    str(c["isDisabled"]),
                )
            if not page["results"]["moreAfter"]:
                break
            page = api.call(
                "GET", f"/v1/campaigns/pages/{page['context']}", params={"pageOffset": 1}
            )
    console.print(table)


@campaigns.command("create")
def create_campaign(
    code_type: str,
    scan_code: Annotated[
        str | None, typer.Option(help="makes it a shared (MULTI) campaign")
    ] = None,
    max_redemptions: Annotated[int | None, typer.Option(min=1)] = None,
    handler: Annotated[str | None, typer.Option(help="fulfillment handler name")] = None,
    transport: Annotated[str, typer.Option(help="local, amqp or webhook")] = "local",
    webhook_url: Annotated[
        str | None,
        typer.Option(help="webhook transport only: https, or http with --private-test-partner"),
    ] = None,
    private_test_partner: Annotated[
        bool, typer.Option(help="webhook: a private test partner, reached over http too")
    ] = False,
    is_async: Annotated[bool, typer.Option("--async", help="the handler may answer later")] = False,
    timeout: Annotated[float, typer.Option(help="allowed processing time, seconds")] = 30.0,
    max_retries: Annotated[int, typer.Option(min=0, max=100)] = 0,
) -> None:
    """Create a personal campaign, or a shared one with --scan-code."""
    body: dict[str, Any] = {"codeType": code_type, "handler": handler}
    if handler:
        body |= {
            "handlerTransport": transport,
            "webhookUrl": webhook_url,
            "privateTestPartner": private_test_partner,
            "async": is_async,
            "timeout": timeout,
            "maxRetries": max_retries,
        }
    if scan_code:
        body |= {"codeUseType": "MULTI", "scanCode": scan_code, "maxRedemptions": max_redemptions}
    with connect() as api:
        created = api.call("POST", "/v1/campaigns", json=body)
    console.print(f"created {created['codeType']} ({created['codeUseType']})")


@campaigns.command("show")
def show_campaign(code_type: str) -> None:
    """One campaign, as JSON."""
    with connect() as api:
        console.print_json(json.dumps(api.call("GET", f"/v1/campaigns/{code_type}")))


def inventory(code_type: str) -> None:
    """How many codes the campaign has in each state."""
    with connect() as api:
        found = api.call("GET", f"/v1/campaigns/{code_type}/inventory")
    table = Table("codeState", "codes", title=f"{code_type} ({found['codeUseType']})")
    for state, count in found["counts"].items():
        table.add_row(state, f"{count:,}")
    table.add_row("total", f"{found['total']:,}")
    console.print(table)


def import_codes(
    code_type: str,
    path: Annotated[Path, typer.Argument(help="a CSV (header with scanCode) or NDJSON file")],
) -> None:
    """Import an inventory file, with a progress bar and the report of rejected lines."""
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    fmt = "ndjson" if path.suffix in (".ndjson", ".jsonl") else "csv"
    with _bar("importing") as (progress, task), connect() as api:
        progress.update(task, total=path.stat().st_size)

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as source:
                while chunk := source.read(CHUNK):
                    progress.advance(task, len(chunk))
                    yield chunk

        report = api.call(
            "POST",
            f"/v1/campaigns/{code_type}/codes/import",
            params={"format": fmt},
            content=chunks(),
        )
    console.print(
        f"{report['rows']:,} rows: {report['added']:,} added, "
        f"{report['unchanged']:,} unchanged, {report['rejected']:,} rejected"
    )
    if report["errors"]:
        table = Table("line", "reason code", "reason", title="rejected lines (first 20)")
        for error in report["errors"][:20]:
            table.add_row(str(error["line"]), str(error["reasonCode"]), error["reason"])
        console.print(table)


def export_codes(
    code_type: str,
    output: Annotated[Path, typer.Option("--output", "-o", help="file to write")],
    fmt: Annotated[str, typer.Option("--format", help="csv or ndjson")] = "csv",
) -> None:
    """Export every code of a campaign to a file, streamed."""
    with connect() as api:
        _download(api, f"/v1/campaigns/{code_type}/codes/export", {"format": fmt}, output)
    console.print(f"wrote {output}")


def generate(
    code_type: str,
    quantity: Annotated[int, typer.Argument(min=1)],
    output: Annotated[Path, typer.Option("--output", "-o", help="file for the new codes")],
    algorithm: Annotated[str, typer.Option(help="FiveByFive, StructuredGuid or Custom")] = (
        "FiveByFive"
    ),
    prefix: Annotated[str | None, typer.Option()] = None,
    check: Annotated[bool, typer.Option(help="add a check character")] = False,
    state: Annotated[str, typer.Option(help="Inactive or Available")] = "Inactive",
    fmt: Annotated[str, typer.Option("--format", help="csv or ndjson")] = "csv",
) -> None:
    """Generate codes in a background job, with a progress bar; write them to a file."""
    body = {
        "quantity": quantity,
        "algorithmName": algorithm,
        "prefix": prefix,
        "codeState": state,
        "algorithmDetailsJson": {"includeCheck": check},
    }
    with connect() as api:
        job = api.call("POST", f"/v1/campaigns/{code_type}/codes/generate", json=body)
        with _bar("generating", total=quantity) as (progress, task):
            while job["state"] == "Running":
                time.sleep(0.5)
                job = api.call("GET", f"/v1/jobs/{job['jobId']}")
                progress.update(task, completed=job["done"])
        if job["state"] != "Completed":
            raise CliError(f"the generation job failed: {job.get('error')}")
        _download(api, f"/v1/jobs/{job['jobId']}/codes", {"format": fmt}, output)
    console.print(f"{quantity:,} codes generated into {code_type}; written to {output}")


def _download(api: Any, path: str, params: dict[str, str], output: Path) -> None:
    with api.stream("GET", path, params=params) as answer, output.open("wb") as out:
        for chunk in answer.iter_bytes():
            out.write(chunk)


class _bar:
    def __init__(self, what: str, total: int | None = None) -> None:
        columns = [TextColumn(what), BarColumn(), TaskProgressColumn()]
        if total is None:
            columns.append(DownloadColumn())
        self._progress = Progress(*columns, console=console, transient=True)
        self._total = total

    def __enter__(self) -> tuple[Progress, Any]:
        self._progress.start()
        return self._progress, self._progress.add_task("", total=self._total)

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()
