"""Redemption routes: `RedeemCode`, waiting for its outcome if asked; one or recent redemptions."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from services.intake.auth import key_id_of
from services.intake.errors import error_response
from services.intake.routes.bodies import StrictJson
from services.intake.routes.deps import AdminRole, GrantDep, QueriesDep, RedeemerDep, RedeemRole
from services.intake.schemas import Accepted, RecentRedemptions, place, place_token
from shared.domain.model import RedemptionStatus
from shared.domain.reasons import ReasonCode
from shared.domain.throttling import LockedOut
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
    who: RedeemRole,
    grant: GrantDep,
    request: Request,
    wait: Annotated[float, Query(ge=0, description="seconds to wait for the outcome")] = 0,
) -> JSONResponse:
    """`RedeemCode`; 429 with `Retry-After` when the caller used up their failure budget."""
    address = request.client.host if request.client else None
    try:
        job, record = await redeemer.redeem(
            body, wait, grant, key_id=key_id_of(who), client_address=address
        )
    except LockedOut as locked:
        response = error_response(locked.reason, locked.message)
        response.headers["Retry-After"] = str(locked.retry_after_s)
        return response
    answer = _answer(record, Accepted(redemption_id=job.redemptionId, request_id=job.requestId))
    if record is not None and record.reasonCode == LockedOut.REASON:  # refused by a worker
        answer.headers["Retry-After"] = str(await redeemer.retry_after_s(job))
    return answer


@router.get("/v1/redemptions")
async def recent_redemptions(
    queries: QueriesDep,
    _: AdminRole,
    grant: GrantDep,
    codeType: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        str | None,
        Query(
            description="the `before` of the page before; or epoch ms, for those accepted earlier"
        ),
    ] = None,
) -> RecentRedemptions:
    """Recent redemption attempts, newest first, each refusal with its real reason."""
    found = await queries.recent(codeType, limit, place(before), grant)
    after = place_token(found[-1]) if len(found) == limit else None
    items = [RedemptionRecord.of(r, reveal=True) for r in found]
    return RecentRedemptions(items=items, before=after)


@router.get("/v1/redemptions/{redemptionId}")
async def get_redemption(
    redemptionId: str, queries: QueriesDep, _: RedeemRole, grant: GrantDep
) -> RedemptionRecord:
    return RedemptionRecord.of(await queries.redemption(redemptionId, grant))


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
