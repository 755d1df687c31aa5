"""The console's campaign pages: the list, a new campaign, one campaign (its settings,
inventory, generation, import, export and code lookup), and generation jobs.

Each calls the intake's own services with the session's grant, as the API's routes do,
and reads forms into the API's own bodies (`forms`): one set of rules for both."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from services.intake.console import forms
from services.intake.console.access import FormDep, IntakeDep, ScriptedDep, SessionDep
from services.intake.console.views import HEADERS, alert_of, bars, fragment, page
from services.intake.paging import MAX_PAGE, PageQuery
from services.intake.schemas import (
    CampaignIn,
    CampaignOut,
    CampaignPatch,
    CodeWithHistory,
    GenerateIn,
    ImportReportOut,
    Inventory,
    JobOut,
)
from shared.domain.reasons import DomainError, ReasonCode

router = APIRouter(prefix="/console", include_in_schema=False)
ROWS = 20
# Streamed, or a file: these have the import's own body limit.
IMPORT_PATH = "/console/campaigns/{codeType}/import"
IMPORT_FORM_PATH = "/console/campaigns/{codeType}/import-form"
_CHUNK = 256 * 1024


async def in_reach(codeType: str, session: SessionDep) -> str:
    """The campaign the path names, refused (90403) if the key does not reach it."""
    session.grant.check_campaign(codeType)
    return codeType


CodeType = Annotated[str, Depends(in_reach)]


@router.get("/campaigns")
async def campaigns(
    request: Request,
    session: SessionDep,
    intake: IntakeDep,
    page_number: Annotated[int, Query(alias="page", ge=1, le=MAX_PAGE)] = 1,
    use: str = "",
    state: str = "",
) -> Response:
    """A page of campaigns, filtered by use (SINGLE, MULTI) and state (enabled, disabled,
    valid now)."""
    filters = {"use": use, "state": state}
    try:
        query = PageQuery(
            ROWS,
            page_number,
            code_use_type=_choice(use, ("SINGLE", "MULTI"), "use"),
            valid_now=True if state == "valid" else None,
            is_disabled={"enabled": False, "disabled": True}.get(state),
        )
        found, count = await intake.admin.campaigns(query, session.grant)
    except DomainError as refused:
        return page(request, "campaigns.html", {"items": [], "filters": filters}, error=refused)
    context = {
        "items": [CampaignOut.of(c) for c in found],
        "count": count,
        "page": page_number,
        "pages": max(1, math.ceil(count / ROWS)),
        "filters": filters,
    }
    return page(request, "campaigns.html", context)


@router.get("/campaigns/new")
async def new_campaign(request: Request, _: SessionDep) -> Response:
    return page(request, "campaign_new.html", {"values": {"codeUseType": "SINGLE"}})


@router.post("/campaigns")
async def create_campaign(
    request: Request, form: FormDep, session: SessionDep, intake: IntakeDep
) -> Response:
    try:
        body = forms.read(CampaignIn, form, forms.CAMPAIGN_FIELDS)
        created = await intake.admin.create_campaign(body.domain_fields(), session.grant)
    except DomainError as refused:
        values = {name: form.get(name) for name in forms.CAMPAIGN_FIELDS}
        return page(request, "campaign_new.html", {"values": values}, error=refused)
    return _see(f"/console/campaigns/{created.code_type}?saved=created")


@router.get("/campaigns/{codeType}")
async def campaign(
    request: Request, codeType: CodeType, intake: IntakeDep, saved: str | None = None
) -> Response:
    return await _campaign_page(request, intake, codeType, saved=saved)


@router.post("/campaigns/{codeType}/edit")
async def edit_campaign(
    request: Request, codeType: CodeType, form: FormDep, intake: IntakeDep
) -> Response:
    """Change the fields the form shows; refused (40396, with the campaign as it is now)
    if the campaign changed since the form was read."""
    try:
        body = forms.read_all(CampaignPatch, form, forms.EDIT_FIELDS, version=_version(form))
        await intake.admin.update_campaign(codeType, body.version, body.domain_fields())
    except DomainError as refused:
        return await _campaign_page(request, intake, codeType, error=refused)
    return _see(f"/console/campaigns/{codeType}?saved=settings")


@router.post("/campaigns/{codeType}/disable")
async def disable_campaign(
    request: Request, codeType: CodeType, form: FormDep, intake: IntakeDep
) -> Response:
    """Disable the campaign (or, with `disabled=false`, enable it again)."""
    disabled = form.get("disabled") != "false"
    try:
        await intake.admin.update_campaign(codeType, _version(form), {"is_disabled": disabled})
    except DomainError as refused:
        return await _campaign_page(request, intake, codeType, error=refused)
    return _see(f"/console/campaigns/{codeType}?saved={'disabled' if disabled else 'enabled'}")


@router.post("/campaigns/{codeType}/generate")
async def generate(
    request: Request, codeType: CodeType, form: FormDep, intake: IntakeDep
) -> Response:
    try:
        body = forms.read(GenerateIn, form, forms.GENERATE_FIELDS)
        job, _ = await intake.generation.generate(codeType, body)
    except DomainError as refused:
        return await _campaign_page(request, intake, codeType, error=refused)
    return _see(f"/console/jobs/{job.job_id}")


# Before /jobs/{jobId}, which would take "<id>.json" too.
@router.get("/jobs/{jobId}.json")
async def job_progress(jobId: str, session: SessionDep, intake: IntakeDep) -> Response:
    found = JobOut.of(await intake.generation.job(jobId, session.grant))
    return JSONResponse(found.model_dump(mode="json"), headers=HEADERS)


@router.get("/jobs/{jobId}")
async def job(request: Request, jobId: str, session: SessionDep, intake: IntakeDep) -> Response:
    """A generation job: a progress bar the page's script moves, and the download when done."""
    try:
        found = JobOut.of(await intake.generation.job(jobId, session.grant))
    except DomainError as refused:
        return page(request, "missing.html", {"what": f"job {jobId}"}, error=refused)
    return page(request, "job.html", {"job": found})


@router.get("/jobs/{jobId}/codes.csv")
async def job_codes(jobId: str, session: SessionDep, intake: IntakeDep) -> Response:
    lines = await intake.generation.codes(jobId, "csv", session.grant)
    return _download(lines, f"{jobId}.csv")


@router.get("/campaigns/{codeType}/export.csv")
async def export(codeType: CodeType, intake: IntakeDep) -> Response:
    return _download(await intake.bulk.export(codeType, "csv"), f"{codeType}.csv")


@router.post(IMPORT_PATH.removeprefix("/console"))
async def import_codes(
    request: Request, codeType: CodeType, _: ScriptedDep, intake: IntakeDep
) -> Response:
    """A file of codes sent as the body by the page's script (which shows the upload's
    progress): the import's report as the page shows it, rejected lines included."""
    kind = "ndjson" if "ndjson" in request.headers.get("content-type", "") else "csv"
    try:
        report = await intake.bulk.import_codes(codeType, kind, request.stream())
    except DomainError as refused:
        return fragment(request, "alert.html", {"alert": alert_of(refused)}, 422)
    out = ImportReportOut.model_validate(report, from_attributes=True)
    return fragment(request, "import_summary.html", {"report": out})


@router.post(IMPORT_FORM_PATH.removeprefix("/console"))
async def import_form(
    request: Request, codeType: CodeType, form: FormDep, intake: IntakeDep
) -> Response:
    """The same import from a plain form, for a browser without scripts."""
    file = form.get("file")
    if not isinstance(file, UploadFile):
        refused = DomainError(ReasonCode.INVALID_PARAMETER_VALUE, "choose a file to import")
        return await _campaign_page(request, intake, codeType, error=refused)
    kind = "ndjson" if (file.filename or "").endswith((".ndjson", ".jsonl")) else "csv"
    try:
        report = await intake.bulk.import_codes(codeType, kind, _chunks(file))
    except DomainError as refused:
        return await _campaign_page(request, intake, codeType, error=refused)
    out = ImportReportOut.model_validate(report, from_attributes=True)
    return page(request, "import_report.html", {"code_type": codeType, "report": out})


@router.get("/campaigns/{codeType}/code")
async def code(
    request: Request,
    codeType: CodeType,
    intake: IntakeDep,
    scanCode: str = "",
    userId: str = "",
) -> Response:
    """One code as typed (normalised as redemptions normalise it), with its history and
    its current attempt; in a shared campaign, one user's instance."""
    context: dict[str, Any] = {"code_type": codeType, "scan_code": scanCode, "user_id": userId}
    if not scanCode.strip():
        return page(request, "code.html", context)
    try:
        found = await intake.admin.code(codeType, scanCode, user=userId.strip() or None)
    except DomainError as refused:
        return page(request, "code.html", context, error=refused)
    return page(request, "code.html", {**context, "code": CodeWithHistory.with_history(found)})


async def _campaign_page(
    request: Request,
    intake: IntakeDep,
    code_type: str,
    *,
    saved: str | None = None,
    error: DomainError | None = None,
) -> Response:
    try:
        found, counts = await intake.admin.inventory(code_type)
    except DomainError as missing:  # no such campaign (now): said so, as a page
        return page(request, "missing.html", {"what": f"campaign {code_type}"}, error=missing)
    inventory = Inventory.of(found, counts)
    context = {
        "campaign": CampaignOut.of(found),
        "inventory": inventory,
        "bars": bars(inventory.counts),
        "saved": saved,
        "instant": forms.instant_value,
    }
    return page(request, "campaign.html", context, error=error)


def _version(form: Any) -> int:
    text = form.get("version")
    if not isinstance(text, str) or not text.isdigit():
        raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, "the form names no version")
    return int(text)


def _choice(value: str, choices: tuple[str, ...], name: str) -> str | None:
    if not value:
        return None
    if value not in choices:
        raise DomainError(ReasonCode.INVALID_PARAMETER_VALUE, f"{name}: one of {choices}")
    return value


def _see(to: str) -> Response:
    return RedirectResponse(to, status_code=303, headers=HEADERS)


def _download(lines: AsyncIterator[bytes], name: str) -> Response:
    headers = {**HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
    return StreamingResponse(lines, media_type="text/csv", headers=headers)


async def _chunks(file: UploadFile) -> AsyncIterator[bytes]:
    while chunk := await file.read(_CHUNK):
        yield chunk
