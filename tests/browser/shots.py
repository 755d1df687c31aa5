"""Screenshots of the browser journeys, kept as test artefacts under `.artifacts/browser/`."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Page

SHOTS = Path(__file__).resolve().parents[2] / ".artifacts" / "browser"


async def snap(page: Page, name: str) -> Path:
    """A full-page screenshot of `page` at `.artifacts/browser/<name>.png`; its path."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    await page.screenshot(path=path, full_page=True)
    return path
