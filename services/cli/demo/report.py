"""What the demo prints: the outcomes, the rate and latencies, and each invariant's verdict."""

from __future__ import annotations

import statistics
from collections import Counter

from rich.console import Console
from rich.table import Table

from services.cli.demo.checks import Check
from services.cli.demo.driver import Attempt


def summary(attempts: list[Attempt], elapsed_s: float, console: Console) -> None:
    table = Table(title="Outcomes")
    for column in ("status", "reason code", "requests"):
        table.add_column(column)
    for (status, reason), count in sorted(
        Counter((a.status or "?", a.reason or 0) for a in attempts).items(), key=str
    ):
        table.add_row(status, str(reason or ""), str(count))
    console.print(table)
    latencies = sorted(a.latency_s or 0 for a in attempts)
    q = statistics.quantiles(latencies, n=100)
    rate = len(attempts) / elapsed_s
    console.print(
        f"{len(attempts)} requests in {elapsed_s:.1f} s, {rate:.0f} per second;"
        f" latency p50 {q[49] * 1000:.0f} ms, p95 {q[94] * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms"
    )


def verdicts(checks: list[Check], console: Console) -> None:
    for name, ok, detail in checks:
        mark = "[green]✓[/]" if ok else "[red]✗[/]"
        console.print(f"{mark} {name}: {detail}")
