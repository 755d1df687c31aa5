"""The async-response route: a fulfillment partner's answer, `ProcessAsynchronousResponse`."""

from __future__ import annotations

from fastapi import APIRouter

from services.intake.routes.bodies import Json
from services.intake.routes.deps import AttemptsDep, GrantDep, PartnerRole
from shared.messages import AsyncAnswer, CodeRecord

router = APIRouter(tags=["redemptions"])


@router.post("/v1/redemptions/{redemptionId}/async-response")
async def async_response(
    redemptionId: str,
    body: Json[AsyncAnswer],
    attempts: AttemptsDep,
    _: PartnerRole,
    grant: GrantDep,
) -> CodeRecord:
    """`ProcessAsynchronousResponse`: a fulfillment partner's answer for the current attempt.

    Checked against the redemption's code: 40759 no `redemptionCodeId`, 40762
    unknown redemption, 90403 a campaign or handler the key does not answer for,
    40767 campaign not async, 40759 identifiers not the redemption's, 40758 not in
    progress, 40760 not the current attempt, 40768 past the allowed processing
    time, 40761 a malformed `asyncResponse`; a refused answer changes nothing.
    """
    code = await attempts.respond(body.for_redemption(redemptionId), grant)
    return CodeRecord.of(code)
