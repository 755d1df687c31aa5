"""The intake's console in a browser: Debian's chromium, headless, driven by Playwright.

A console page loads nothing from the internet and throws no script error: every request
off the intake is aborted, and it, a failed request, a console error or an uncaught script
error fails the test at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import (
    Browser,
    ConsoleMessage,
    Error,
    Page,
    Request,
    Route,
    async_playwright,
    expect,
)

from bench.support.processes import ADMIN_KEY, System
from tests.browser.shots import snap

CHROMIUM = Path("/usr/bin/chromium")  # Debian's: Playwright never downloads a browser
# Chromium's own traffic (QUIC probes, updates, sync, background fetches) stays off: nothing
# but the intake is reachable from the tests.
CHROMIUM_ARGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000
CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep the test's own report on it, so the `page` fixture knows whether it failed."""
    report = yield
    if report.when == "call":
        item.stash[CALL_REPORT] = report
    return report


@pytest.fixture(scope="session")
async def chromium() -> AsyncIterator[Browser]:
    executable = debian_chromium()
    expect.set_options(timeout=TIMEOUT_MS)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()


def debian_chromium() -> Path:
    """Debian's chromium, or a failed test (never a skip: a missing browser is a broken setup)."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's chromium "
            "(`apt-get install chromium`, which `./dev test` does)",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture
def console(system: System) -> str:
    """The base URL of a running system's intake, which serves the console."""
    intake, _, _ = system.start_all("intake", "worker", "results")
    return intake.url


@pytest.fixture
async def page(
    chromium: Browser, console: str, request: pytest.FixtureRequest
) -> AsyncIterator[Page]:
    """A page in a fresh context (its own profile, no cookies) on the console's origin."""
    context = await chromium.new_context(viewport={"width": 1280, "height": 800}, base_url=console)
    context.set_default_timeout(TIMEOUT_MS)
    watch = Watch(origin(console))
    await context.route("**/*", watch.route)
    page = await context.new_page()
    watch.attach(page)
    yield page
    problems = watch.problems()
    try:
        report = request.node.stash.get(CALL_REPORT, None)
        if problems or (report is not None and report.failed):
            await snap(page, request.node.name)
    finally:
        await context.close()
    if problems:
        pytest.fail("the page misbehaved:\n" + "\n".join(problems), pytrace=False)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass
class Watch:
    """What a page did that a console page must not."""

    intake: str
    off_site: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    script_errors: list[str] = field(default_factory=list)
    console_errors: list[ConsoleMessage] = field(default_factory=list)
    documents: set[str] = field(default_factory=set)

    async def route(self, route: Route) -> None:
        """Only the intake's origin is reached; anything else is aborted and recorded."""
        if origin(route.request.url) == self.intake:
            await route.fallback()
            return
        self.off_site.append(f"request off the intake: {route.request.method} {route.request.url}")
        await route.abort("blockedbyclient")

    def attach(self, page: Page) -> None:
        page.on("request", self._request)
        page.on("requestfailed", self._request_failed)
        page.on("pageerror", self._page_error)
        page.on("console", self._console)

    def problems(self) -> list[str]:
        # Chromium logs a page answered 4xx (a refused sign-in, say) as a resource that
        # failed to load; that is the server's answer, not a broken asset.
        console = [
            f"console error: {m.text} ({m.location['url']}:{m.location['lineNumber']})"
            for m in self.console_errors
            if not self._a_page_answered_with_an_error(m)
        ]
        return [*self.off_site, *self.failed, *self.script_errors, *console]

    def _request(self, request: Request) -> None:
        if request.resource_type == "document":
            self.documents.add(request.url)

    def _request_failed(self, request: Request) -> None:
        if origin(request.url) == self.intake:  # off-site ones are recorded when aborted
            self.failed.append(f"request failed: {request.url}: {request.failure}")

    def _page_error(self, error: Error) -> None:
        self.script_errors.append(f"script error: {error.message}\n{error.stack or ''}")

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(message)

    def _a_page_answered_with_an_error(self, message: ConsoleMessage) -> bool:
        return (
            message.text.startswith("Failed to load resource: the server responded")
            and message.location["url"] in self.documents
        )


def at(path: str) -> Callable[[str], bool]:
    """A URL predicate for `page.wait_for_url`: the URL's path is `path`."""
    return lambda url: urlsplit(url).path == path


async def submit_key(page: Page, key: str) -> None:
    """Fill the login form with `key` and submit it, as an operator does."""
    await page.goto("/console/login")
    await page.get_by_label("Admin key").fill(key)
    await page.get_by_role("button", name="Sign in").click()


async def sign_in(page: Page, key: str = ADMIN_KEY) -> None:
    """Sign in to the console with `key`, ending on the campaigns page."""
    await submit_key(page, key)
    await page.wait_for_url(at("/console/campaigns"))
