"""The Grafana dashboard and the Prometheus alerts under deploy/ query only metrics the
services export, every metric the services export is on the dashboard, and the alerts
a platform team expects are there, each well formed."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY

# The modules that define the services' metrics, imported for their registration.
METRIC_MODULES = (
    "services.intake.app",
    "services.results.gauges",
    "services.results.relay",
    "services.worker.consumer",
    "services.worker.timers",
    "shared.adapters.unreadable",
    "shared.entrypoints.consumer",
    "shared.service.measures",
)
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "redemption-codes.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
OURS = ("redemption", "http_")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}
EXPECTED_ALERTS = {
    "RedemptionDeadLettersGrowing",
    "RedemptionOutboxLagging",
    "RedemptionTimersLate",
    "RedemptionWorkQueueOld",
    "RedemptionLockoutSpike",
}


def exported() -> dict[str, str]:
    """Each series name the services export, with the family it belongs to."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    names = {}
    for family in REGISTRY.collect():
        if family.name.startswith(OURS):
            for suffix in SUFFIXES[family.type]:
                names[family.name + suffix] = family.name
    return names


def selectors(node: Any) -> Iterator[str]:
    """The metric names a parsed PromQL expression selects."""
    if isinstance(node, promql_parser.VectorSelector):
        if node.name:
            yield node.name
        return
    for field in ("lhs", "rhs", "expr", "param", "vector_selector"):
        child = getattr(node, field, None)
        if child is not None:
            yield from selectors(child)
    for arg in getattr(node, "args", None) or ():
        yield from selectors(arg)


def queried(expr: str) -> set[str]:
    # Grafana's interval variable, as a panel sends it.
    return set(selectors(promql_parser.parse(expr.replace("$__rate_interval", "5m"))))


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    assert panels and all(panel["targets"] for panel in panels)
    return [target["expr"] for panel in panels for target in panel["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_every_query_names_only_metrics_the_services_export(source: str) -> None:
    exprs = dashboard_exprs() if source == "dashboard" else [r["expr"] for r in alert_rules()]
    names = exported()

    unknown = {name for expr in exprs for name in queried(expr)} - set(names)

    assert not unknown, f"{source} queries metrics no service exports: {sorted(unknown)}"


def test_every_metric_the_services_export_is_on_the_dashboard() -> None:
    shown = {exported()[name] for expr in dashboard_exprs() for name in queried(expr)}

    assert set(exported().values()) - shown == set()


def test_the_alerts_cover_dead_letters_outbox_lag_timers_queue_age_and_lockouts() -> None:
    rules = alert_rules()

    assert {rule["alert"] for rule in rules} >= EXPECTED_ALERTS
    for rule in rules:
        assert queried(rule["expr"]), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
