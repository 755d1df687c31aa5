"""Whole-campaign routes: inventory, generation and its jobs, import, export, delete, reset."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from services.intake.routes.bodies import Json
from services.intake.routes.deps import AdminDep, AdminRole, BulkDep, GenerationDep, GrantDep
from services.intake.schemas import (
    Deleted,
    GeneratedInline,
    GenerateIn,
    ImportReportOut,
    Inventory,
    JobOut,
    Reset,
    ResetIn,
)
from shared.domain.states import CodeState

router = APIRouter(tags=["codes"])
BASE = "/v1/campaigns/{codeType}/codes"
IMPORT_PATH = BASE + "/import"  # streamed: its body has a limit of its own (app.py)
MEDIA_TYPES = {"csv": "text/csv", "ndjson": "application/x-ndjson"}
# Lines of codes, as a streamed route sends or takes them (`format` picks the type).
LINES = {media_type: {"schema": {"type": "string"}} for media_type in MEDIA_TYPES.values()}
STREAMED: dict[int | str, dict[str, Any]] = {
    200: {"description": "one code a line, streamed", "content": LINES}
}
LineFormat = Literal["csv", "ndjson"]


@router.get("/v1/campaigns/{codeType}/inventory")
async def inventory(codeType: str, admin: AdminDep, _: AdminRole) -> Inventory:
    return Inventory.of(*await admin.inventory(codeType))


@router.post(
    BASE + "/generate",
    status_code=202,
    responses={200: {"model": GeneratedInline}, 202: {"model": JobOut}},
)
async def generate_codes(
    codeType: str, body: Json[GenerateIn], generation: GenerationDep, _: AdminRole
) -> JSONResponse:
    """`GenerateCodes`: a job (202); with `inline`, `GenerateCodesInline` (200)."""
    job, codes = await generation.generate(codeType, body)
    if body.inline:
        return JSONResponse(GeneratedInline(generated_scan_codes=codes).model_dump())
    return JSONResponse(JobOut.of(job).model_dump(), status_code=202)


@router.get("/v1/jobs/{jobId}")
async def get_job(jobId: str, generation: GenerationDep, _: AdminRole, grant: GrantDep) -> JobOut:
    return JobOut.of(await generation.job(jobId, grant))


@router.get("/v1/jobs/{jobId}/codes", response_class=StreamingResponse, responses=STREAMED)
async def job_codes(
    jobId: str,
    generation: GenerationDep,
    _: AdminRole,
    grant: GrantDep,
    format: Annotated[LineFormat, Query()] = "csv",
) -> StreamingResponse:
    """The codes a generation job made, streamed."""
    lines = await generation.codes(jobId, format, grant)
    return StreamingResponse(lines, media_type=MEDIA_TYPES[format])


@router.post(IMPORT_PATH, openapi_extra={"requestBody": {"content": LINES, "required": True}})
async def import_codes(
    codeType: str,
    request: Request,
    bulk: BulkDep,
    _: AdminRole,
    format: Annotated[LineFormat | None, Query()] = None,
) -> ImportReportOut:
    """Bulk import, streamed: CSV (header with scanCode) or NDJSON, one code a line."""
    kind = format or ("ndjson" if "ndjson" in request.headers.get("content-type", "") else "csv")
    report = await bulk.import_codes(codeType, kind, request.stream())
    return ImportReportOut.model_validate(report, from_attributes=True)


@router.get(BASE + "/export", response_class=StreamingResponse, responses=STREAMED)
async def export_codes(
    codeType: str,
    bulk: BulkDep,
    _: AdminRole,
    format: Annotated[LineFormat, Query()] = "csv",
) -> StreamingResponse:
    """Every code of the campaign, streamed."""
    lines = await bulk.export(codeType, format)
    return StreamingResponse(lines, media_type=MEDIA_TYPES[format])


@router.delete(BASE)
async def delete_codes(codeType: str, admin: AdminDep, _: AdminRole) -> Deleted:
    """Delete every code of the campaign that no redemption holds."""
    return Deleted(deleted=await admin.delete_codes(codeType))


@router.post(BASE + "/reset")
async def reset_codes(codeType: str, body: Json[ResetIn], admin: AdminDep, who: AdminRole) -> Reset:
    """Reset every code no redemption holds to `codeState`, each with its event."""
    return Reset(reset=await admin.reset_codes(codeType, CodeState(body.code_state), who))
