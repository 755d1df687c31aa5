"""Redemption routes: `RedeemCode`, waiting for its outcome if asked; one or recent redemptions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from services.intake.errors import error_response
from services.intake.routes.bodies import StrictJson
from services.intake.routes.deps import AdminRole, QueriesDep, RedeemerDep, RedeemRole
from services.intake.schemas import Accepted, RecentRedemptions, instant
from shared.clock import to_ms
from shared.domain.model import RedemptionStatus
from shared.domain.reasons import ReasonCode
from shared.messages import CodeRecord, RedeemCommand, RedemptionRecord

router = APIRouter(tags=["redemptions"])


@router.post(
    "/v1/redemptions",
    status_code=202,
    responses={200: {"model": CodeRecord}, 202: {"model": Accepted}},
)
async def redeem(
    body: StrictJson[RedeemCommand],
    redeemer: RedeemerDep,
    _: RedeemRole,
    wait: Annotated[float, Query(ge=0, description="seconds to wait for the outcome")] = 0,
) -> JSONResponse:
    job, record = await redeemer.redeem(body, wait)
    return _answer(record, Accepted(redemption_id=job.redemptionId, request_id=job.requestId))


@router.get("/v1/redemptions")
async def recent_redemptions(
    queries: QueriesDep,
    _: AdminRole,
    codeType: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[int | None, Query(description="epoch ms, from the last page")] = None,
) -> RecentRedemptions:
    """Recent redemption attempts, newest first."""
    found = await queries.recent(codeType, limit, instant(before))
    last = found[-1].accepted_at if len(found) == limit else None
    return RecentRedemptions(items=[RedemptionRecord.of(r) for r in found], before=to_ms(last))


@router.get("/v1/redemptions/{redemptionId}")
async def get_redemption(redemptionId: str, queries: QueriesDep, _: RedeemRole) -> RedemptionRecord:
    return RedemptionRecord.of(await queries.redemption(redemptionId))


def _answer(record: RedemptionRecord | None, accepted: Accepted) -> JSONResponse:
    """202 while it runs; 200 with the code once redeemed; else the refusal it ended with."""
    if record is None or not record.status.is_terminal:
        return JSONResponse(accepted.model_dump(), status_code=202)
    if record.status is RedemptionStatus.REDEEMED and record.code is not None:
        body = record.code.model_copy(update={"redemptionId": record.redemptionId})
        return JSONResponse(body.model_dump(mode="json"), status_code=200)
    reason = ReasonCode(record.reasonCode or ReasonCode.REDEMPTION_FAILED)
    response = error_response(reason, record.message or record.status.value)
    response.headers["x-redemption-id"] = record.redemptionId
    return response
