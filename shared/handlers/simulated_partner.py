"""A fulfillment partner simulated in process, for demos and tests.

Behaves as `shared.handlers.simulation` describes, driven by each code's
`customCodeInfo.simulate` (`delayS`, `fail`, `failAttempts`, `silent`, and
`raise` to crash). Synchronous campaigns get the outcome after the delay;
asynchronous ones get "not yet" until the delay has passed since the attempt
started, then the outcome, on the call or poll that comes next.
"""

import asyncio
from collections.abc import Mapping
from typing import Any

from shared.clock import to_ms, utcnow
from shared.handlers import simulation

NEVER_S = 24 * 3600.0


async def simulated_partner(request: Mapping[str, Any]) -> Mapping[str, Any]:
    chosen = simulation.plan(request, simulation.Behaviour())
    rules = (request.get("customCodeInfo") or {}).get("simulate") or {}
    if chosen.silent:
        await asyncio.sleep(NEVER_S)
    if request.get("async"):
        return simulation.async_answer(request, chosen, to_ms(utcnow()) or 0)
    await asyncio.sleep(chosen.delay_s)
    if rules.get("raise"):
        raise RuntimeError("simulated partner crashed")
    return simulation.outcome(request, chosen)
