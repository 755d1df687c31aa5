"""Failpoints: the spec's grammar, each action, probability, and two wired places."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.results.relay import Relay
from services.worker.bootstrap import bootstrap
from shared.adapters.rabbitmq import Broker
from shared.domain.model import (
    Campaign,
    Code,
    CodeRef,
    CodeUseType,
    Redemption,
    RedemptionStatus,
)
from shared.domain.states import CodeState
from shared.runtime import failpoints
from shared.runtime.failpoints import Failpoint, FailpointError, configure, failpoint, parse
from tests.fakes import FakeStore

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def cleared() -> Iterator[None]:
    configure("")
    yield
    configure("")


def test_a_spec_names_actions_and_probabilities() -> None:
    spec = " after-claim=kill@0.2 , relay-before-mark=raise,in-give-up=stall:1.5@1"
    assert parse(spec) == {
        "after-claim": Failpoint("after-claim", "kill", probability=0.2),
        "relay-before-mark": Failpoint("relay-before-mark", "raise"),
        "in-give-up": Failpoint("in-give-up", "stall", stall_s=1.5),
    }
    assert parse("") == parse("  ") == {}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("after-claim", "'after-claim' is not NAME=ACTION[@PROBABILITY]"),
        ("after-claim=", "'after-claim=' is not NAME=ACTION"),
        ("=kill", "'=kill' is not NAME=ACTION"),
        ("after-claim=kill,", "'' is not NAME=ACTION"),
        ("after-clam=kill", "unknown failpoint 'after-clam'; known: intake-after-publish,"),
        ("after-claim=boom", "'after-claim': unknown action 'boom'; expected kill, raise"),
        ("after-claim=stall", "'stall' needs seconds >= 0"),
        ("after-claim=stall:", "'stall:' needs seconds >= 0"),
        ("after-claim=stall:soon", "'stall:soon' needs seconds >= 0"),
        ("after-claim=stall:-1", "'stall:-1' needs seconds >= 0"),
        ("after-claim=stall:inf", "'stall:inf' needs seconds >= 0"),
        ("after-claim=kill@0", "probability '0' is not in (0, 1]"),
        ("after-claim=kill@1.5", "probability '1.5' is not in (0, 1]"),
        ("after-claim=kill@nan", "probability 'nan' is not in (0, 1]"),
        ("after-claim=kill@", "probability '' is not in (0, 1]"),
        ("after-claim=kill,after-claim=raise", "'after-claim' is given twice"),
    ],
)
def test_a_malformed_spec_is_refused_naming_the_bad_part(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        configure(spec)
    assert failpoints.parse("") == {}


def test_a_bad_variable_stops_the_process_at_start() -> None:
    ran = _python("import shared.runtime.failpoints", "after-claim=explode")
    assert ran.returncode == 1
    assert "ValueError: REDEEM_FAILPOINTS: failpoint 'after-claim': unknown action" in ran.stderr


async def test_raise_raises_a_failpoint_error() -> None:
    configure("after-claim=raise")
    with pytest.raises(FailpointError, match="after-claim"):
        await failpoint("after-claim")
    assert isinstance(FailpointError("x"), RuntimeError)


async def test_stall_waits_at_least_its_seconds() -> None:
    configure("after-claim=stall:0.05")
    started = time.monotonic()
    await failpoint("after-claim")
    assert time.monotonic() - started >= 0.05


async def test_a_failpoint_fires_only_when_its_draw_is_below_the_probability() -> None:
    draws = iter([0.3, 0.1, 0.2])
    configure("after-claim=raise@0.2", draw=lambda: next(draws))
    await failpoint("after-claim")  # 0.3: no
    with pytest.raises(FailpointError):
        await failpoint("after-claim")  # 0.1: yes
    await failpoint("after-claim")  # 0.2: no (fires on draws in [0, 0.2))


async def test_unset_or_other_names_have_no_effect() -> None:
    await failpoint("after-claim")
    configure("relay-before-mark=raise", draw=lambda: pytest.fail("no draw for others"))
    await failpoint("after-claim")
    assert configure("") == {}
    await failpoint("relay-before-mark")


def test_kill_kills_the_process_with_sigkill_after_logging() -> None:
    script = (
        "import asyncio, shared.runtime.failpoints as f; asyncio.run(f.failpoint('after-claim'))"
    )
    ran = _python(script, "after-claim=kill")
    assert ran.returncode == -9
    assert "failpoint fired" in ran.stdout + ran.stderr


def test_every_known_failpoint_is_wired_and_every_wired_one_known() -> None:
    called = re.compile(r'await failpoint\("([a-z-]+)"\)')
    wired = {
        name
        for path in (ROOT / "services").rglob("*.py")
        for name in called.findall(path.read_text())
    }
    assert wired == set(failpoints.KNOWN)


async def test_a_raise_after_the_claim_interrupts_the_redemption_which_resumes() -> None:
    store = FakeStore()
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    await store.add_code(Code("c1", "gems", "ABC", CodeState.AVAILABLE, NOW, NOW))
    counter = itertools.count()
    service = bootstrap(
        store, {}, campaign_cache_ttl_s=0, clock=lambda: NOW, ids=lambda: f"id-{next(counter)}"
    ).redeem
    pending = Redemption("r1", "r1", "u1", "ABC", NOW, NOW, code_type="gems")
    configure("after-claim=raise")
    with pytest.raises(FailpointError):
        await service.redeem(pending)
    held = await store.get_code(CodeRef("gems", "ABC"))
    assert held is not None and held.redemption_id == "r1"
    configure("")
    outcome = await service.redeem(pending)  # the redelivery
    assert outcome.status is RedemptionStatus.REDEEMED
    assert store.events() == ["code.inprogress", "code.redeemed"]


class ConfirmingBroker(Broker):
    """Confirms every publish at once; no connection."""

    def __init__(self) -> None:
        self.published: list[str] = []

    async def publish(self, exchange: str, routing_key: str, body: bytes, **_: Any) -> None:
        self.published.append(routing_key)


async def test_a_raise_before_marking_leaves_the_published_events_in_the_outbox() -> None:
    store, broker = FakeStore(), ConfirmingBroker()
    await store.create_campaign(Campaign("gems", CodeUseType.SINGLE, NOW, NOW))
    await store.add_code(Code("c1", "gems", "ABC", CodeState.AVAILABLE, NOW, NOW))
    service = bootstrap(store, {}, campaign_cache_ttl_s=0, clock=lambda: NOW).redeem
    await service.redeem(Redemption("r1", "r1", "u1", "ABC", NOW, NOW, code_type="gems"))
    relay = Relay(store, broker, batch=10, idle_s=0.01)
    configure("relay-before-mark=raise")
    with pytest.raises(FailpointError):
        await relay.relay_once()
    assert broker.published == ["code.inprogress", "code.redeemed"]
    assert store.events() == ["code.inprogress", "code.redeemed"]  # none marked relayed
    configure("")
    await relay.relay_once()
    assert broker.published == ["code.inprogress", "code.redeemed"] * 2  # at least once
    assert store.events() == []


def _python(script: str, spec: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, failpoints.ENV_VAR: spec}
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
