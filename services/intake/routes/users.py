"""User routes: `GetRedeemedCodes`, the codes a user redeemed."""

from __future__ import annotations

from fastapi import APIRouter

from services.intake.routes.deps import GrantDep, QueriesDep, RedeemRole
from services.intake.schemas import RedeemedCodes
from shared.messages import CodeRecord

router = APIRouter(tags=["redemptions"])


@router.get("/v1/users/{userId}/redeemed-codes")
async def redeemed_codes(
    userId: str, queries: QueriesDep, _: RedeemRole, grant: GrantDep, codeType: str | None = None
) -> RedeemedCodes:
    codes = await queries.redeemed_codes(userId, codeType, grant)
    return RedeemedCodes(codes=[CodeRecord.of(c) for c in codes])
