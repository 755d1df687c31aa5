"""Named failpoints: places where a fault test makes this process die, raise or stall.

Configured by one environment variable, read once when this module is first
imported, so that a mistake stops the process at start:

    REDEEM_FAILPOINTS="after-claim=kill@0.2,relay-before-mark=raise@0.1"

Comma-separated `NAME=ACTION[@PROBABILITY]`: ACTION is `kill` (SIGKILL, no
cleanup, like a crash), `raise` (`FailpointError`, handled like any unexpected
error) or `stall:SECONDS`; PROBABILITY is in (0, 1], 1 when left out. Unset,
`await failpoint(name)` costs one dict lookup.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

import structlog

ENV_VAR: Final = "REDEEM_FAILPOINTS"

# Every failpoint, with where it is: one place, checked when a spec is parsed.
KNOWN: Final[Mapping[str, str]] = MappingProxyType(
    {
        "intake-after-publish": "intake: job confirmed on the work queue, caller not yet answered",
        "after-claim": "worker: this delivery claimed the code, nothing else done yet",
        "before-fulfillment-call": "worker: attempt started, handler not yet called",
        "after-fulfillment-call": "worker: handler answered, its answer not yet recorded",
        "in-give-up": "worker: held codes' attempts stopped, redemption not yet ended",
        "after-timer-taken": "worker: a due timer taken (leased), not yet acted on",
        "relay-before-mark": "results: events confirmed by the broker, not yet marked relayed",
        "relay-before-reply-mark": "results: replies confirmed by the broker, not yet marked sent",
    }
)

Action = Literal["kill", "raise", "stall"]
log = structlog.get_logger()


class FailpointError(RuntimeError):
    """Raised by a failpoint configured to `raise`."""


@dataclass(frozen=True)
class Failpoint:
    name: str
    action: Action
    stall_s: float = 0.0
    probability: float = 1.0


_table: dict[str, Failpoint] = {}
_draw: Callable[[], float] = random.Random().random


def parse(spec: str) -> dict[str, Failpoint]:
    """The table a spec describes; raises ValueError naming its first bad part."""
    table: dict[str, Failpoint] = {}
    if not spec.strip():
        return table
    for entry in spec.split(","):
        point = _entry(entry.strip())
        if point.name in table:
            raise ValueError(f"failpoint {point.name!r} is given twice")
        table[point.name] = point
    return table


def _entry(entry: str) -> Failpoint:
    name, equals, rest = entry.partition("=")
    name = name.strip()
    if not equals or not name or not rest.strip():
        raise ValueError(f"failpoint entry {entry!r} is not NAME=ACTION[@PROBABILITY]")
    if name not in KNOWN:
        raise ValueError(f"unknown failpoint {name!r}; known: {', '.join(KNOWN)}")
    action, at, probability = rest.partition("@")
    return _action(name, action.strip(), _probability(name, probability.strip()) if at else 1.0)


def _action(name: str, action: str, probability: float) -> Failpoint:
    if action == "kill":
        return Failpoint(name, "kill", probability=probability)
    if action == "raise":
        return Failpoint(name, "raise", probability=probability)
    kind, colon, seconds = action.partition(":")
    if kind != "stall":
        raise ValueError(
            f"failpoint {name!r}: unknown action {action!r}; expected kill, raise or stall:SECONDS"
        )
    stall_s = _number(seconds) if colon else None
    if stall_s is None or stall_s < 0:
        raise ValueError(f"failpoint {name!r}: {action!r} needs seconds >= 0, e.g. stall:3")
    return Failpoint(name, "stall", stall_s=stall_s, probability=probability)


def _probability(name: str, text: str) -> float:
    probability = _number(text)
    if probability is None or not 0 < probability <= 1:
        raise ValueError(f"failpoint {name!r}: probability {text!r} is not in (0, 1]")
    return probability


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def configure(spec: str, *, draw: Callable[[], float] | None = None) -> Mapping[str, Failpoint]:
    """Replace the active failpoints with `spec`'s ("" clears them); returns them.

    `draw` gives the random numbers (in [0, 1)) a probability is checked against.
    """
    global _draw
    table = parse(spec)
    _table.clear()
    _table.update(table)
    _draw = draw or random.Random().random
    return MappingProxyType(_table)


async def failpoint(name: str) -> None:
    """Die, raise or stall here if the failpoint `name` is configured (and its draw hits)."""
    if name not in _table:
        return
    await _act(_table[name])


async def _act(point: Failpoint) -> None:
    if point.probability < 1 and _draw() >= point.probability:
        return
    log.warning("failpoint fired", failpoint=point.name, action=point.action)
    if point.action == "kill":
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    elif point.action == "raise":
        raise FailpointError(f"failpoint {point.name!r} fired")
    else:
        await asyncio.sleep(point.stall_s)


def _from_environment() -> None:
    try:
        configure(os.environ.get(ENV_VAR, ""))
    except ValueError as error:
        raise ValueError(f"{ENV_VAR}: {error}") from None


_from_environment()
