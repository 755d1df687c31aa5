"""The console's pages of what happens: recent redemptions (live), one user's redeemed
codes, lockouts to see and clear, and the dead-lettered messages with their reasons."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from services.intake.console.access import FormDep, IntakeDep, SessionDep
from services.intake.console.views import HEADERS, fragment, page
from services.intake.schemas import LockoutOut
from shared.clock import utcnow
from shared.domain.reasons import DomainError, ReasonCode
from shared.messages import CodeRecord, RedemptionRecord
from shared.ports.broker import DeadLetterLog

log = structlog.get_logger()
router = APIRouter(prefix="/console", include_in_schema=False)
RECENT = 50
LOCKOUTS = 100
DEAD_LETTERS = 100
# How far back the dead letters page looks: the log keeps a week.
SINCE = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}


@router.get("/redemptions")
async def redemptions(
    request: Request, session: SessionDep, intake: IntakeDep, codeType: str = ""
) -> Response:
    """The newest redemption attempts with their outcomes and reasons; the page's script
    keeps the table current (`/redemptions/rows`)."""
    context: dict[str, Any] = {"code_type": codeType}
    try:
        context["items"] = await _recent(intake, session, codeType)
    except DomainError as refused:
        return page(request, "redemptions.html", {**context, "items": []}, error=refused)
    return page(request, "redemptions.html", context)


@router.get("/redemptions/rows")
async def redemption_rows(
    request: Request, session: SessionDep, intake: IntakeDep, codeType: str = ""
) -> Response:
    """The table's rows alone, rendered as the page renders them."""
    items = await _recent(intake, session, codeType)
    return fragment(request, "redemption_rows.html", {"items": items})


@router.get("/users")
async def user_codes(
    request: Request, session: SessionDep, intake: IntakeDep, userId: str = "", codeType: str = ""
) -> Response:
    """The codes one user redeemed, of every campaign the key reaches or of one."""
    context: dict[str, Any] = {"user_id": userId, "code_type": codeType}
    if not userId:
        return page(request, "user.html", context)
    try:
        codes = await intake.queries.redeemed_codes(userId, codeType or None, session.grant)
    except DomainError as refused:
        return page(request, "user.html", context, error=refused)
    return page(request, "user.html", {**context, "codes": [CodeRecord.of(c) for c in codes]})


@router.get("/lockouts")
async def lockouts(
    request: Request,
    session: SessionDep,
    intake: IntakeDep,
    after: Annotated[str | None, Query(max_length=300)] = None,
    cleared: str | None = None,
) -> Response:
    found, last = await intake.budget.lockouts(session.grant, after=after, limit=LOCKOUTS)
    context = {"items": [LockoutOut.of(x) for x in found], "after": last, "cleared": cleared}
    return page(request, "lockouts.html", context)


@router.post("/lockouts/clear")
async def clear_lockout(
    request: Request, form: FormDep, session: SessionDep, intake: IntakeDep
) -> Response:
    scope = form.get("scope")
    if not isinstance(scope, str) or not scope:
        refused = DomainError(ReasonCode.INVALID_PARAMETER_VALUE, "the form names no scope")
        return page(request, "lockouts.html", {"items": []}, error=refused)
    try:
        await intake.budget.clear(scope, session.grant)
    except DomainError as refused:
        return page(request, "lockouts.html", {"items": []}, error=refused)
    to = f"/console/lockouts?{urlencode({'cleared': scope})}"
    return RedirectResponse(to, status_code=303, headers=HEADERS)


@router.get("/dead-letters")
async def dead_letters(request: Request, session: SessionDep, since: str = "24h") -> Response:
    """The messages dead-lettered lately, newest first, with the reason each was set aside
    (read from the dead-letter log: the dead-letter queue keeps every one of them). Only
    for a key that reaches every campaign: a dead letter may be any campaign's."""
    if session.grant.campaigns is not None:
        refused = DomainError(
            ReasonCode.FORBIDDEN, "dead letters may be any campaign's: this key is limited"
        )
        return page(request, "dead_letters.html", {"items": [], "since": since}, error=refused)
    window = SINCE.get(since)
    if window is None:
        refused = DomainError(ReasonCode.INVALID_PARAMETER_VALUE, f"since: one of {list(SINCE)}")
        return page(request, "dead_letters.html", {"items": [], "since": "24h"}, error=refused)
    letters: DeadLetterLog = request.app.state.dead_letters
    try:
        found = await letters.dead_letters(utcnow() - window, DEAD_LETTERS)
    except Exception as exc:  # the broker unreachable or slow: said, not a 500
        log.exception("could not read the dead-letter log")
        message = f"the dead-letter log could not be read: {exc}"
        refused = DomainError(ReasonCode.SERVICE_UNAVAILABLE, message)
        return page(request, "dead_letters.html", {"items": [], "since": since}, error=refused)
    return page(request, "dead_letters.html", {"items": found, "since": since})


async def _recent(intake: IntakeDep, session: SessionDep, code_type: str) -> list[RedemptionRecord]:
    if code_type:
        session.grant.check_campaign(code_type)
    found = await intake.queries.recent(code_type or None, RECENT, None, session.grant)
    return [RedemptionRecord.of(r, reveal=True) for r in found]
