"""A fulfillment partner simulated in process, for demos and tests.

`customCodeInfo.simulate` sets its behaviour: `delayS` (seconds to take),
`fail` (answer `success: false`), `raise` (crash). Without it, it succeeds.
"""

import asyncio
from collections.abc import Mapping
from typing import Any


async def simulated_partner(request: Mapping[str, Any]) -> Mapping[str, Any]:
    plan = (request.get("customCodeInfo") or {}).get("simulate") or {}
    await asyncio.sleep(float(plan.get("delayS", 0)))
    if plan.get("raise"):
        raise RuntimeError("simulated partner crashed")
    if plan.get("fail"):
        return {
            "success": False,
            "complete": True,
            "errorCode": "SIMULATED_FAILURE",
            "errorMsg": "the simulated partner refused",
        }
    info = {"partner": "simulated", "attempt": request.get("attempt")}
    return {"success": True, "complete": True, "customRedemptionInfo": info}
