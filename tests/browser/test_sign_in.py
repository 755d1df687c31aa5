"""Signing in to the console and out of it, as an operator does in a browser."""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable
from urllib.parse import unquote, urlsplit

import pytest
from playwright.async_api import Cookie, Page, expect

from bench.support.processes import ADMIN_KEY, REDEEM_KEY
from tests.browser.conftest import at, sign_in, submit_key
from tests.browser.shots import snap

SESSION_COOKIE = "redeem_console"
MAX_TABS = 10  # presses of Tab allowed to reach a place on the login page, which has few controls
NOTHING_FOCUSED = "() => document.activeElement === document.body"
FOCUSED = "element => element === document.activeElement"


async def session_cookie(page: Page) -> Cookie | None:
    cookies = await page.context.cookies()
    return next((c for c in cookies if c.get("name") == SESSION_COOKIE), None)


def reveals(value: str, secret: str) -> bool:
    """Whether a cookie's `value` shows `secret`: plain, URL-encoded, or in a base64 part (as
    a signed but unencrypted cookie would)."""
    plain = unquote(value)
    shown = [value, plain]
    for part in re.split(r"[.:|]", plain):
        try:
            shown.append(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).decode("latin-1"))
        except ValueError:
            continue
    return any(secret in text for text in shown)


async def tab_until(page: Page, reached: Callable[[], Awaitable[object]], what: str) -> None:
    """Press Tab until `reached()` holds, at most MAX_TABS times."""
    for _ in range(MAX_TABS):
        if await reached():
            return
        await page.keyboard.press("Tab")
    if not await reached():
        pytest.fail(f"{MAX_TABS} presses of Tab never reached {what}")


async def expect_refused(page: Page, reason_code: str) -> None:
    await expect(page.get_by_role("alert")).to_contain_text(reason_code)
    assert urlsplit(page.url).path == "/console/login"
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert await session_cookie(page) is None


async def test_the_console_sends_a_signed_out_operator_to_sign_in(page: Page) -> None:
    await page.goto("/console")
    await page.wait_for_url(at("/console/login"))
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await snap(page, "sign-in-page")


async def test_a_wrong_key_is_refused_with_90401_and_opens_no_session(page: Page) -> None:
    await submit_key(page, "wrong-admin-key")
    await expect_refused(page, "90401")
    await snap(page, "sign-in-refused")


async def test_a_key_without_the_admin_role_is_refused_with_90403(page: Page) -> None:
    await submit_key(page, REDEEM_KEY)
    await expect_refused(page, "90403")
    await snap(page, "sign-in-forbidden")


async def test_the_admin_key_opens_a_strict_http_only_session_on_the_campaigns(
    page: Page,
) -> None:
    await sign_in(page)
    await expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()
    cookie = await session_cookie(page)
    assert cookie is not None, await page.context.cookies()
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/console"
    assert not reveals(cookie["value"], ADMIN_KEY), cookie["value"]
    await snap(page, "sign-in")


async def test_signing_out_ends_the_session(page: Page) -> None:
    await sign_in(page)
    async with page.expect_navigation():
        await page.get_by_role("button", name="Sign out").click()
    assert await session_cookie(page) is None, await page.context.cookies()
    await page.goto("/console/campaigns")
    await page.wait_for_url(at("/console/login"))
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await snap(page, "signed-out")


async def test_a_form_post_without_its_csrf_token_is_refused(page: Page) -> None:
    await sign_in(page)
    # The context's request API sends the session cookie, as a forged form post would.
    answer = await page.request.post("/console/logout", form={}, max_redirects=0)
    assert answer.status == 403, (answer.status, await answer.text())
    await page.goto("/console/campaigns")
    assert urlsplit(page.url).path == "/console/campaigns"
    await expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()
    await snap(page, "csrf-refused")


async def test_an_operator_signs_in_from_the_keyboard(page: Page) -> None:
    await page.goto("/console/login")
    key_field = page.get_by_label("Admin key")
    # Whatever the page focuses itself, Tab runs past its last control back to the top.
    await tab_until(page, lambda: page.evaluate(NOTHING_FOCUSED), "the top of the page")
    await page.keyboard.press("Tab")
    await tab_until(page, lambda: key_field.evaluate(FOCUSED), "the key field")
    await page.keyboard.type(ADMIN_KEY)
    await page.keyboard.press("Enter")
    await page.wait_for_url(at("/console/campaigns"))
    await expect(page.get_by_role("heading", name="Campaigns")).to_be_visible()
    await snap(page, "sign-in-keyboard")
