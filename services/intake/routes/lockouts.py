"""Lockouts: the scopes that used up their failed redemptions, to see and to clear."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from services.intake.routes.deps import AdminRole, BudgetDep, GrantDep
from services.intake.schemas import Cleared, LockoutOut, Lockouts

router = APIRouter(tags=["lockouts"])


@router.get("/v1/lockouts")
async def lockouts(
    budget: BudgetDep,
    _: AdminRole,
    grant: GrantDep,
    after: Annotated[str | None, Query(description="the `after` of the page before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Lockouts:
    """The scopes locked out now, by scope. A page may hold fewer than `limit` and still
    be followed by another: ask again after its `after` until that is null."""
    found, last = await budget.lockouts(grant, after=after, limit=limit)
    return Lockouts(items=[LockoutOut.of(x) for x in found], after=last)


@router.delete("/v1/lockouts/{scope:path}")
async def clear_lockout(scope: str, budget: BudgetDep, _: AdminRole, grant: GrantDep) -> Cleared:
    """Lift a lockout: the scope's failed redemptions are forgotten."""
    return Cleared(scope=scope, cleared=await budget.clear(scope, grant))
