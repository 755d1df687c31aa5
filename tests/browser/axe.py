"""Accessibility checks by axe-core (installed by `./dev test` in tests/browser/node_modules):
the WCAG 2.1 A and AA rules, contrast among them, on the page as it is now."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Page

AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


async def violations(page: Page) -> list[str]:
    """What axe finds wrong on `page`: each rule broken, with the elements that break it.

    axe is evaluated over the DevTools protocol, not added as a script, so that the page's
    Content-Security-Policy (scripts from the intake only) still holds in the test."""
    if not AXE.exists():
        pytest.fail(f"{AXE} is missing: `./dev test` installs it (npm ci --prefix tests/browser)")
    await page.evaluate(AXE.read_text())
    found = await page.evaluate(
        """async (tags) => (await axe.run(document, { runOnly: { type: "tag", values: tags } }))
            .violations.map((v) => `${v.id} (${v.impact}): ${v.help}: `
              + v.nodes.map((n) => n.target.join(" ")).join(", "))""",
        TAGS,
    )
    return list(found)
