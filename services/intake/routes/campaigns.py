"""Campaign routes: create, page through, read and change campaigns."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from services.intake.admin import Admin
from services.intake.paging import MAX_PAGE, Contexts, PageQuery
from services.intake.routes.bodies import Json
from services.intake.routes.deps import AdminDep, AdminRole, ContextsDep, GrantDep
from services.intake.schemas import (
    CampaignIn,
    CampaignList,
    CampaignOut,
    CampaignPage,
    CampaignPatch,
)
from shared.domain.access import Grant

router = APIRouter(tags=["campaigns"])


@router.post("/v1/campaigns", status_code=201)
async def create_campaign(
    body: Json[CampaignIn], admin: AdminDep, _: AdminRole, grant: GrantDep
) -> CampaignOut:
    return CampaignOut.of(await admin.create_campaign(body.domain_fields(), grant))


@router.get("/v1/campaigns")
async def list_campaigns(
    admin: AdminDep,
    contexts: ContextsDep,
    _: AdminRole,
    grant: GrantDep,
    rowsPerPage: Annotated[int, Query(ge=1, le=500)] = 50,
    pageNumber: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    codeUseType: Literal["SINGLE", "MULTI"] | None = None,
    validNow: bool | None = None,
    isDisabled: bool | None = None,
) -> CampaignList:
    """`SysGetCodeTypePage`: one page, and the `context` to move from it."""
    query = PageQuery(rowsPerPage, pageNumber, codeUseType, validNow, isDisabled)
    return await _page(admin, contexts, query, grant)


@router.get("/v1/campaigns/pages/{context}")
async def move_campaign_page(
    context: str,
    admin: AdminDep,
    contexts: ContextsDep,
    _: AdminRole,
    grant: GrantDep,
    pageOffset: Annotated[int, Query(ge=-MAX_PAGE, le=MAX_PAGE)] = 0,
) -> CampaignList:
    """`SysGetCodeTypePageOffset`: the page `pageOffset` pages away from the context's."""
    return await _page(admin, contexts, contexts.load(context).moved(pageOffset), grant)


@router.patch("/v1/campaigns/{codeType}")
async def update_campaign(
    codeType: str, body: Json[CampaignPatch], admin: AdminDep, _: AdminRole
) -> CampaignOut:
    fields = body.domain_fields()
    return CampaignOut.of(await admin.update_campaign(codeType, body.version, fields))


@router.get("/v1/campaigns/{codeType}")
async def get_campaign(codeType: str, admin: AdminDep, _: AdminRole) -> CampaignOut:
    return CampaignOut.of(await admin.campaign(codeType))


async def _page(admin: Admin, contexts: Contexts, query: PageQuery, grant: Grant) -> CampaignList:
    """A page of the campaigns within the key's reach (whichever key the context came from)."""
    items, count = await admin.campaigns(query, grant)
    page = CampaignPage.of(query, items, count)
    return CampaignList(context=contexts.dump(query), results=page)
