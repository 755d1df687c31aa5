"""Code routes: add one code, read it with its history, change it, activate, invalidate."""

from __future__ import annotations

from fastapi import APIRouter

from services.intake.routes.bodies import Json
from services.intake.routes.deps import AdminDep, AdminRole
from services.intake.schemas import (
    ActivateIn,
    AddCodeIn,
    CodeWithHistory,
    InvalidateIn,
    UpdateCustomInfoIn,
)
from shared.domain.states import CodeState
from shared.messages import CodeRecord

router = APIRouter(tags=["codes"])
BASE = "/v1/campaigns/{codeType}/codes"


@router.post(BASE, status_code=201)
async def add_code(
    codeType: str, body: Json[AddCodeIn], admin: AdminDep, _: AdminRole
) -> CodeRecord:
    code = await admin.add_code(
        codeType, body.scan_code, CodeState(body.code_state), body.custom_code_info
    )
    return CodeRecord.of(code)


@router.get(BASE + "/{scanCode}")
async def get_code(codeType: str, scanCode: str, admin: AdminDep, _: AdminRole) -> CodeWithHistory:
    return CodeWithHistory.with_history(await admin.code(codeType, scanCode))


@router.patch(BASE + "/{scanCode}")
async def update_custom_info(
    codeType: str, scanCode: str, body: Json[UpdateCustomInfoIn], admin: AdminDep, who: AdminRole
) -> CodeRecord:
    code = await admin.update_custom_info(
        codeType, scanCode, body.version, body.custom_code_info, who
    )
    return CodeRecord.of(code)


@router.post(BASE + "/{scanCode}/activate")
async def activate(
    codeType: str,
    scanCode: str,
    admin: AdminDep,
    who: AdminRole,
    body: Json[ActivateIn] | None = None,
) -> CodeRecord:
    info = body.custom_code_info if body else None
    return CodeRecord.of(await admin.activate(codeType, scanCode, info, who))


@router.post(BASE + "/{scanCode}/invalidate")
async def invalidate(
    codeType: str,
    scanCode: str,
    admin: AdminDep,
    who: AdminRole,
    body: Json[InvalidateIn] | None = None,
) -> CodeRecord:
    reason = body.invalidation_reason if body else None
    return CodeRecord.of(await admin.invalidate(codeType, scanCode, reason, who))
