"""The intake's HTTP API: the routes of DESIGN section 10 that issue 2 covers."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from services.intake import errors
from services.intake.admin import Admin
from services.intake.auth import Keys, requires
from services.intake.bulk import Importer, export_lines
from services.intake.commands import CommandConsumer
from services.intake.paging import Contexts, PageQuery
from services.intake.redemptions import Outcomes, job_for, submit
from services.intake.schemas import (
    Accepted,
    ActivateIn,
    AddCodeIn,
    CampaignIn,
    CampaignList,
    CampaignOut,
    CampaignPage,
    CampaignPatch,
    CodeWithHistory,
    Deleted,
    GeneratedInline,
    GenerateIn,
    ImportReportOut,
    InvalidateIn,
    Inventory,
    JobOut,
    RecentRedemptions,
    RedeemedCodes,
    RedeemIn,
    Reset,
    ResetIn,
    UpdateCustomInfoIn,
    instant,
)
from shared import topology
from shared.clock import Clock, new_id, to_ms, utcnow
from shared.config import Settings
from shared.domain.model import CodeUseType, RedemptionStatus
from shared.domain.reasons import DomainError, ReasonCode
from shared.domain.states import CodeState
from shared.fulfillment.outcomes import Outcomes as AttemptOutcomes
from shared.messages import AsyncAnswer, CodeRecord, ErrorBody, JobMessage, RedemptionRecord
from shared.ops import ops_router
from shared.runtime import Adapters

MEDIA_TYPES = {"csv": "text/csv", "ndjson": "application/x-ndjson"}
Connect = Callable[[Settings, str], AbstractAsyncContextManager[Adapters]]
Admin_ = Annotated[str, Depends(requires("admin"))]
Redeemer = Annotated[str, Depends(requires("redeem"))]
Partner = Annotated[str, Depends(requires("fulfillment"))]
ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (401, 403, 404, 409, 422)
}


@dataclass
class Intake:
    adapters: Adapters
    admin: Admin
    outcomes: Outcomes
    attempts: AttemptOutcomes
    clock: Clock
    max_wait_s: float
    contexts: Contexts


def create_app(settings: Settings, connect: Connect, clock: Clock = utcnow) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with connect(settings, "intake") as a:
            outcomes = Outcomes()
            await outcomes.start(a.broker)
            attempts = AttemptOutcomes(a.store, clock, new_id, lease_s=settings.fulfillment_lease_s)
            commands = CommandConsumer(
                a.broker, attempts, clock, max_deliveries=settings.max_deliveries
            )
            await commands.start()
            app.state.intake = Intake(
                a,
                Admin(a.store, clock, new_id),
                outcomes,
                attempts,
                clock,
                settings.max_wait_s,
                Contexts(settings.context_secret or secrets.token_hex(32)),
            )
            app.include_router(ops_router([("store", a.store.ping), ("broker", a.broker.ping)]))
            yield
            await commands.stop()

    app = FastAPI(title="Redemption codes", version="1", lifespan=lifespan, responses=ERRORS)
    app.state.keys = Keys(settings.api_key_roles())
    errors.install(app)
    app.add_middleware(errors.BodyLimit, streamed=("/codes/import",))
    _campaign_routes(app)
    _bulk_routes(app)  # before /codes/{scanCode}, which would take /codes/export
    _code_routes(app)
    _redemption_routes(app)
    return app


def intake_of(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


Deps = Annotated[Intake, Depends(intake_of)]


def _campaign_routes(app: FastAPI) -> None:
    @app.post("/v1/campaigns", status_code=201, tags=["campaigns"])
    async def create_campaign(body: CampaignIn, deps: Deps, _: Admin_) -> CampaignOut:
        fields = {
            "code_type": body.codeType,
            "code_use_type": CodeUseType(body.codeUseType),
            "scan_code": body.scanCode,
            "max_redemptions": body.maxRedemptions,
            "description": body.description,
            "valid_start": instant(body.validStart),
            "valid_end": instant(body.validEnd),
            "custom_code_info": body.customCodeInfo,
            "is_disabled": body.isDisabled,
            **body.fulfillment_fields(),
        }
        return CampaignOut.of(await deps.admin.create_campaign(fields))

    @app.get("/v1/campaigns", tags=["campaigns"])
    async def list_campaigns(
        deps: Deps,
        _: Admin_,
        rowsPerPage: Annotated[int, Query(ge=1, le=500)] = 50,
        pageNumber: Annotated[int, Query(ge=1)] = 1,
        codeUseType: Literal["SINGLE", "MULTI"] | None = None,
        validNow: bool | None = None,
        isDisabled: bool | None = None,
    ) -> CampaignList:
        """`SysGetCodeTypePage`: one page, and the `context` to move from it."""
        query = PageQuery(rowsPerPage, pageNumber, codeUseType, validNow, isDisabled)
        return await _page(deps, query)

    @app.get("/v1/campaigns/pages/{context}", tags=["campaigns"])
    async def move_campaign_page(
        context: str, deps: Deps, _: Admin_, pageOffset: int = 0
    ) -> CampaignList:
        """`SysGetCodeTypePageOffset`: the page `pageOffset` pages away from the context's."""
        return await _page(deps, deps.contexts.load(context).moved(pageOffset))

    @app.patch("/v1/campaigns/{codeType}", tags=["campaigns"])
    async def update_campaign(
        codeType: str, body: CampaignPatch, deps: Deps, _: Admin_
    ) -> CampaignOut:
        fields = body.domain_fields()
        return CampaignOut.of(await deps.admin.update_campaign(codeType, body.version, fields))

    @app.get("/v1/campaigns/{codeType}", tags=["campaigns"])
    async def get_campaign(codeType: str, deps: Deps, _: Admin_) -> CampaignOut:
        return CampaignOut.of(await deps.admin.campaign(codeType))


async def _page(deps: Intake, query: PageQuery) -> CampaignList:
    items, count = await deps.admin.campaigns(query)
    page = CampaignPage(
        count=count,
        page=query.page,
        items=[CampaignOut.of(c) for c in items],
        moreAfter=query.page * query.rows < count,
        moreBefore=query.page > 1,
    )
    return CampaignList(context=deps.contexts.dump(query), results=page)


def _bulk_routes(app: FastAPI) -> None:
    """Whole-campaign operations: inventory, generation, import, export, delete, reset."""
    base = "/v1/campaigns/{codeType}/codes"

    @app.get("/v1/campaigns/{codeType}/inventory", tags=["codes"])
    async def inventory(codeType: str, deps: Deps, _: Admin_) -> Inventory:
        campaign, counts = await deps.admin.inventory(codeType)
        return Inventory(
            codeType=campaign.code_type,
            codeUseType=campaign.code_use_type.value,
            counts={state.value: n for state, n in counts.items()},
            total=sum(counts.values()),
            redemptionCount=campaign.redemption_count if campaign.is_shared else None,
            maxRedemptions=campaign.max_redemptions,
        )

    @app.post(
        base + "/generate",
        status_code=202,
        tags=["codes"],
        responses={200: {"model": GeneratedInline}, 202: {"model": JobOut}},
    )
    async def generate_codes(
        codeType: str, body: GenerateIn, deps: Deps, _: Admin_
    ) -> JSONResponse:
        """`GenerateCodes`: a job (202); with `inline`, `GenerateCodesInline` (200)."""
        job, codes = await deps.admin.generate(codeType, body)
        if body.inline:
            return JSONResponse(GeneratedInline(generatedScanCodes=codes).model_dump())
        message = JobMessage(jobId=job.job_id).model_dump_json().encode()
        await deps.adapters.broker.publish(
            topology.WORK_EXCHANGE, topology.JOB_ROUTING_KEY, message, message_id=job.job_id
        )
        return JSONResponse(JobOut.of(job).model_dump(), status_code=202)

    @app.get("/v1/jobs/{jobId}", tags=["codes"])
    async def get_job(jobId: str, deps: Deps, _: Admin_) -> JobOut:
        return JobOut.of(await deps.admin.job(jobId))

    @app.get("/v1/jobs/{jobId}/codes", tags=["codes"])
    async def job_codes(
        jobId: str,
        deps: Deps,
        _: Admin_,
        format: Annotated[Literal["csv", "ndjson"], Query()] = "csv",
    ) -> StreamingResponse:
        """The codes a generation job made, streamed."""
        job = await deps.admin.job(jobId)
        batches = deps.adapters.store.codes_of(job.code_type, job_id=job.job_id)
        return StreamingResponse(export_lines(batches, format), media_type=MEDIA_TYPES[format])

    @app.post(base + "/import", tags=["codes"])
    async def import_codes(
        codeType: str,
        request: Request,
        deps: Deps,
        _: Admin_,
        format: Annotated[Literal["csv", "ndjson"] | None, Query()] = None,
    ) -> ImportReportOut:
        """Bulk import, streamed: CSV (header with scanCode) or NDJSON, one code a line."""
        await deps.admin.personal_campaign(codeType)
        kind = format or (
            "ndjson" if "ndjson" in request.headers.get("content-type", "") else "csv"
        )
        report = await Importer(deps.adapters.store, deps.clock, new_id).run(
            codeType, kind, request.stream()
        )
        return ImportReportOut.model_validate(report, from_attributes=True)

    @app.get(base + "/export", tags=["codes"])
    async def export_codes(
        codeType: str,
        deps: Deps,
        _: Admin_,
        format: Annotated[Literal["csv", "ndjson"], Query()] = "csv",
    ) -> StreamingResponse:
        """Every code of the campaign, streamed."""
        await deps.admin.personal_campaign(codeType)
        lines = export_lines(deps.adapters.store.codes_of(codeType), format)
        return StreamingResponse(lines, media_type=MEDIA_TYPES[format])

    @app.delete(base, tags=["codes"])
    async def delete_codes(codeType: str, deps: Deps, _: Admin_) -> Deleted:
        """Delete every code of the campaign that no redemption holds."""
        return Deleted(deleted=await deps.admin.delete_codes(codeType))

    @app.post(base + "/reset", tags=["codes"])
    async def reset_codes(codeType: str, body: ResetIn, deps: Deps, who: Admin_) -> Reset:
        """Reset every code no redemption holds to `codeState`, each with its event."""
        count = await deps.admin.reset_codes(codeType, CodeState(body.codeState), who)
        return Reset(reset=count)


def _code_routes(app: FastAPI) -> None:
    base = "/v1/campaigns/{codeType}/codes"

    @app.post(base, status_code=201, tags=["codes"])
    async def add_code(codeType: str, body: AddCodeIn, deps: Deps, _: Admin_) -> CodeRecord:
        code = await deps.admin.add_code(
            codeType, body.scanCode, CodeState(body.codeState), body.customCodeInfo
        )
        return CodeRecord.of(code)

    @app.get(base + "/{scanCode}", tags=["codes"])
    async def get_code(codeType: str, scanCode: str, deps: Deps, _: Admin_) -> CodeWithHistory:
        return CodeWithHistory.with_history(await deps.admin.code(codeType, scanCode))

    @app.patch(base + "/{scanCode}", tags=["codes"])
    async def update_custom_info(
        codeType: str, scanCode: str, body: UpdateCustomInfoIn, deps: Deps, who: Admin_
    ) -> CodeRecord:
        code = await deps.admin.update_custom_info(
            codeType, scanCode, body.version, body.customCodeInfo, who
        )
        return CodeRecord.of(code)

    @app.post(base + "/{scanCode}/activate", tags=["codes"])
    async def activate(
        codeType: str, scanCode: str, deps: Deps, who: Admin_, body: ActivateIn | None = None
    ) -> CodeRecord:
        info = body.customCodeInfo if body else None
        return CodeRecord.of(await deps.admin.activate(codeType, scanCode, info, who))

    @app.post(base + "/{scanCode}/invalidate", tags=["codes"])
    async def invalidate(
        codeType: str, scanCode: str, deps: Deps, who: Admin_, body: InvalidateIn | None = None
    ) -> CodeRecord:
        reason = body.invalidationReason if body else None
        return CodeRecord.of(await deps.admin.invalidate(codeType, scanCode, reason, who))


def _redemption_routes(app: FastAPI) -> None:
    @app.post(
        "/v1/redemptions",
        status_code=202,
        tags=["redemptions"],
        responses={200: {"model": CodeRecord}, 202: {"model": Accepted}},
    )
    async def redeem(
        body: RedeemIn,
        deps: Deps,
        _: Redeemer,
        wait: Annotated[float, Query(ge=0, description="seconds to wait for the outcome")] = 0,
    ) -> JSONResponse:
        wait = min(wait, deps.max_wait_s)
        job = job_for(
            user_id=body.userId,
            scan_code=body.scanCode,
            code_type=body.codeType,
            custom_redemption_info=body.customRedemptionInfo,
            request_id=body.requestId,
            clock=deps.clock,
            reply_to=deps.outcomes.queue_name if wait else None,
        )
        accepted = Accepted(redemptionId=job.redemptionId, requestId=job.requestId)
        if not wait:
            await submit(deps.adapters.broker, job, via="http")
            return JSONResponse(accepted.model_dump(), status_code=202)
        future = deps.outcomes.expect(job.redemptionId)
        try:
            await submit(deps.adapters.broker, job, via="http")
            record = await _outcome(deps, job.redemptionId, future, wait)
        finally:
            deps.outcomes.forget(job.redemptionId, future)
        return _answer(record, accepted)

    @app.get("/v1/redemptions", tags=["redemptions"])
    async def recent_redemptions(
        deps: Deps,
        _: Admin_,
        codeType: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        before: Annotated[int | None, Query(description="epoch ms, from the last page")] = None,
    ) -> RecentRedemptions:
        """Recent redemption attempts, newest first."""
        found = await deps.admin.recent(codeType, limit, instant(before))
        last = found[-1].accepted_at if len(found) == limit else None
        return RecentRedemptions(items=[RedemptionRecord.of(r) for r in found], before=to_ms(last))

    @app.get("/v1/redemptions/{redemptionId}", tags=["redemptions"])
    async def get_redemption(redemptionId: str, deps: Deps, _: Redeemer) -> RedemptionRecord:
        redemption = await deps.adapters.store.get_redemption(redemptionId)
        if redemption is None:
            raise DomainError(ReasonCode.REDEMPTION_NOT_FOUND, "no such redemption (yet)")
        return RedemptionRecord.of(redemption)

    @app.post("/v1/redemptions/{redemptionId}/async-response", tags=["redemptions"])
    async def async_response(
        redemptionId: str, body: AsyncAnswer, deps: Deps, _: Partner
    ) -> CodeRecord:
        """`ProcessAsynchronousResponse`: a fulfillment partner's answer for the current attempt.

        Checked against the redemption's code: 40762 unknown redemption, 40767
        campaign not async, 40759 identifiers not the redemption's, 40758 not in
        progress, 40760 not the current attempt, 40768 past the allowed processing
        time, 40761 a malformed `asyncResponse`; a refused answer changes nothing.
        """
        code = await deps.attempts.respond(body.for_redemption(redemptionId))
        return CodeRecord.of(code)

    @app.get("/v1/users/{userId}/redeemed-codes", tags=["redemptions"])
    async def redeemed_codes(
        userId: str, deps: Deps, _: Redeemer, codeType: str | None = None
    ) -> RedeemedCodes:
        codes = await deps.admin.redeemed_codes(userId, codeType)
        return RedeemedCodes(codes=[CodeRecord.of(c) for c in codes])


async def _outcome(
    deps: Intake, redemption_id: str, future: asyncio.Future[RedemptionRecord], wait: float
) -> RedemptionRecord | None:
    """The outcome as results sends it, or as stored when the wait ends first."""
    try:
        return await asyncio.wait_for(asyncio.shield(future), wait)
    except TimeoutError:
        stored = await deps.adapters.store.get_redemption(redemption_id)
        return RedemptionRecord.of(stored) if stored else None


def _answer(record: RedemptionRecord | None, accepted: Accepted) -> JSONResponse:
    if record is None or not record.status.is_terminal:
        return JSONResponse(accepted.model_dump(), status_code=202)
    if record.status is RedemptionStatus.REDEEMED and record.code is not None:
        body = record.code.model_copy(update={"redemptionId": record.redemptionId})
        return JSONResponse(body.model_dump(mode="json"), status_code=200)
    reason = ReasonCode(record.reasonCode or ReasonCode.REDEMPTION_FAILED)
    response = errors.error_response(reason, record.message or record.status.value)
    response.headers["x-redemption-id"] = record.redemptionId
    return response
