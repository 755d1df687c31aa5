"""Signing in and out of the console, and what every other console route depends on: the
session, the intake's services, and a form whose CSRF token is checked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from services.intake.bootstrap import Intake
from services.intake.console.sessions import (
    CSRF_FIELD,
    CSRF_HEADER,
    CsrfRefused,
    Session,
    Sessions,
    SignedOut,
    check_csrf,
    refused_key,
)
from services.intake.console.views import HEADERS, page
from shared.domain.reasons import DomainError

router = APIRouter(prefix="/console", include_in_schema=False)


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.console
    return sessions


async def session_of(request: Request) -> Session:
    """The signed-in operator (SignedOut sends anyone else to the sign-in page)."""
    session = sessions_of(request).read(request)
    request.state.csrf = session.csrf
    return session


async def intake_of(request: Request) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


async def posted(
    request: Request, session: Annotated[Session, Depends(session_of)]
) -> AsyncIterator[FormData]:
    """A posted form, refused (CsrfRefused) unless it carries its session's token; the
    files it brought are closed after the request. One that cannot be read (over its
    size limit, say) is refused as a page (FormRefused)."""
    try:
        form = await request.form()
    except DomainError as refused:
        raise FormRefused(refused) from None
    try:
        token = form.get(CSRF_FIELD)
        check_csrf(session, token if isinstance(token, str) else None)
        yield form
    finally:
        await form.close()


async def scripted(request: Request, session: Annotated[Session, Depends(session_of)]) -> Session:
    """A script's request that changes something, refused unless it sends the token."""
    check_csrf(session, request.headers.get(CSRF_HEADER))
    return session


SessionDep = Annotated[Session, Depends(session_of)]
ScriptedDep = Annotated[Session, Depends(scripted)]
FormDep = Annotated[FormData, Depends(posted)]
IntakeDep = Annotated[Intake, Depends(intake_of)]


@router.get("")
async def home(request: Request) -> Response:
    """The campaigns for an operator signed in, else the sign-in page."""
    try:
        sessions_of(request).read(request)
    except SignedOut:
        return _redirect("/console/login")
    return _redirect("/console/campaigns")


@router.get("/login")
async def sign_in_page(request: Request) -> Response:
    return _sign_in_form(request)


@router.post("/login")
async def sign_in(request: Request) -> Response:
    sessions = sessions_of(request)
    async with request.form() as form:
        token, key = form.get(CSRF_FIELD), form.get("key")
    sessions.check_sign_in(request, token if isinstance(token, str) else "")
    response = _redirect("/console/campaigns")
    try:
        sessions.open(key if isinstance(key, str) else "", response, request)
    except DomainError as refused:
        return _sign_in_form(request, refused_key(refused), refused)
    return response


@router.post("/logout")
async def sign_out(_: FormDep) -> Response:
    response = _redirect("/console/login")
    Sessions.end(response)
    return response


def _sign_in_form(
    request: Request, alert: str | None = None, error: DomainError | None = None
) -> Response:
    sessions = sessions_of(request)
    token = sessions.sign_in_token(request)
    response = page(request, "login.html", {"csrf": token}, error=error, alert=alert)
    sessions.keep_sign_in(token, response, request)
    return response


def _redirect(to: str) -> Response:
    return RedirectResponse(to, status_code=303, headers=HEADERS)


def signed_out(request: Request, _: SignedOut) -> Response:
    """Pages send the signed-out to sign in; a page's script (it sends its token with
    every request) hears 401."""
    if request.headers.get(CSRF_HEADER) is not None:
        return Response(status_code=401, headers=HEADERS)
    return _redirect("/console/login")


def csrf_refused(request: Request, _: CsrfRefused) -> Response:
    return page(request, "refused.html", status=403)


class FormRefused(Exception):
    """A posted form that could not be read, and why."""

    def __init__(self, error: DomainError) -> None:
        super().__init__(error.message)
        self.error = error


def form_refused(request: Request, refused: FormRefused) -> Response:
    return page(request, "form_refused.html", error=refused.error)
