"""How the console's pages are rendered: Jinja templates (escaped by default), the
headers every page carries, and the small formatting the templates share."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from services.intake.refusals import http_status
from shared.domain.codekeys import masked
from shared.domain.reasons import DomainError
from shared.domain.states import CodeState
from shared.ports.broker import DeadLetter

HERE = Path(__file__).parent
STATIC = HERE / "static"
# Everything the console loads comes from the intake itself; no script or style inline.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
# The inventory chart's colours, each with a contrast of at least 3:1 on white.
STATE_COLOURS = {
    CodeState.INACTIVE.value: "#5a5f66",
    CodeState.AVAILABLE.value: "#1b6e3a",
    CodeState.IN_PROGRESS.value: "#8a5a00",
    CodeState.REDEEMED.value: "#1d4f91",
    CodeState.FAILED.value: "#7a3e9d",
    CodeState.INVALIDATED.value: "#a12a2a",
}

templates = Jinja2Templates(directory=HERE / "templates")


def when(ms: int | None) -> str:
    """An instant in epoch ms as operators read it, in UTC."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


SHOWN_CHARACTERS = 2_000


def excerpt(letter: DeadLetter) -> str:
    """A dead letter's body as the console shows it: JSON, indented, every `scanCode` in it
    masked (a job carries its code in plain), its first 2,000 characters. A body that is
    not whole JSON is not shown: it may hold a code where no field names it."""
    try:
        if letter.size > len(letter.body):
            raise ValueError("cut short")
        document = json.loads(letter.body)
    except ValueError:
        return f"({letter.size} bytes that are not whole JSON: not shown, as they may hold a code)"
    shown = json.dumps(_masked(document), indent=2, ensure_ascii=False)
    return shown if len(shown) <= SHOWN_CHARACTERS else shown[:SHOWN_CHARACTERS] + " …"


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: masked(v) if k == "scanCode" and isinstance(v, str) else _masked(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


def segment(value: str) -> str:
    """A value as one segment of a URL's path: every reserved character escaped."""
    return quote(value, safe="")


templates.env.filters["when"] = when
templates.env.filters["segment"] = segment
templates.env.globals["excerpt"] = excerpt


@dataclass(frozen=True)
class Bar:
    """One state's bar of an inventory chart."""

    state: str
    count: int
    width: float  # percent of the largest
    colour: str


def bars(counts: Mapping[str, int]) -> list[Bar]:
    """An inventory's bars, every state shown (none left out for being 0)."""
    top = max(counts.values(), default=0) or 1
    return [
        Bar(state, counts.get(state, 0), 100 * counts.get(state, 0) / top, colour)
        for state, colour in STATE_COLOURS.items()
    ]


def alert_of(error: DomainError) -> str:
    """A refusal as the console says it: its reason code and name, and why."""
    return f"{int(error.reason)} {error.reason.name}: {error.message}"


def page(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    error: DomainError | None = None,
    alert: str | None = None,
) -> HTMLResponse:
    """A page, with the session's CSRF token for its forms; a refusal shown as an alert
    (`alert`, or the refusal's own words), with the refusal's status."""
    values = {"csrf": getattr(request.state, "csrf", ""), **(context or {})}
    if error is not None:
        values["alert"] = alert or alert_of(error)
        status = http_status(error.reason)
    response = templates.TemplateResponse(request, template, values, status_code=status)
    response.headers.update(HEADERS)
    return response


def fragment(
    request: Request, template: str, context: Mapping[str, Any], status: int = 200
) -> HTMLResponse:
    """A part of a page, rendered as the page renders it, for the page's script to put in."""
    response = templates.TemplateResponse(request, template, dict(context), status_code=status)
    response.headers.update(HEADERS)
    return response
