"""docker-compose.yml: the broker keeps its queues across re-creation, services stop
gracefully within their grace period, and each service waits only for what it uses."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from shared.domain.campaigns import Campaign, CodeUseType

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 26, tzinfo=UTC)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match, duration
    return int(match[1]) * (60 if match[2] == "m" else 1)


def test_the_broker_has_a_fixed_name_and_keeps_its_data_in_a_volume() -> None:
    file = compose()
    rabbitmq = file["services"]["rabbitmq"]

    assert rabbitmq["hostname"] == "rabbitmq"
    volume, _, mounted = rabbitmq["volumes"][0].partition(":")
    assert mounted == "/var/lib/rabbitmq" and volume in file["volumes"]


def test_a_worker_may_finish_a_fulfillment_call_before_it_is_killed() -> None:
    services = compose()["services"]
    default_attempt_s = Campaign("any", CodeUseType.SINGLE, NOW, NOW).timeout_s

    assert seconds(services["worker"]["stop_grace_period"]) > default_attempt_s
    for name in ("intake", "results"):
        assert seconds(services[name]["stop_grace_period"]) > 10  # the default is 10 s


def test_the_partner_simulator_waits_only_for_the_broker() -> None:
    services = compose()["services"]

    assert set(services["partner"]["depends_on"]) == {"rabbitmq"}
    for name in ("intake", "worker", "results"):
        assert set(services[name]["depends_on"]) == {"rabbitmq", "mongodb"}
