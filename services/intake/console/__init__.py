"""The operator's web console at `/console`: pages the intake renders over its own
services, signed in with an admin key (`sessions`), every asset served by the intake.

`install` adds it to the intake's app: the sessions, the routes, the static files, and
the answers to a caller signed out (the sign-in page) or a form without its token (403).
"""

from __future__ import annotations

import secrets

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.intake.console import access, activity, campaigns
from services.intake.console.sessions import CsrfRefused, Sessions, SignedOut
from services.intake.console.views import STATIC
from shared.runtime.settings import Settings

IMPORT_PATH = campaigns.IMPORT_PATH
IMPORT_FORM_PATH = campaigns.IMPORT_FORM_PATH


def install(app: FastAPI, settings: Settings) -> None:
    secret = settings.console_secret or secrets.token_hex(32)
    app.state.console = Sessions(settings.api_keys_parsed(), secret, settings.console_session_s)
    app.add_exception_handler(SignedOut, access.signed_out)  # type: ignore[arg-type]
    app.add_exception_handler(CsrfRefused, access.csrf_refused)  # type: ignore[arg-type]
    app.add_exception_handler(access.FormRefused, access.form_refused)  # type: ignore[arg-type]
    for area in (access, campaigns, activity):
        app.include_router(area.router)
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
