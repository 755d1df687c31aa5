"""The console's main journeys in a real browser against the running system: campaigns
made, edited (a stale edit refused) and disabled; codes generated with a progress bar and
downloaded; a file imported with its rejected lines; a code looked up with its history
and attempts; redemptions arriving live; a user's codes; a lockout cleared; dead letters
with their reasons. Each journey leaves a screenshot in `.artifacts/browser/`."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Page, expect

from shared import topology
from shared.adapters.rabbitmq import Broker
from shared.clock import utcnow
from tests.browser.axe import violations
from tests.browser.conftest import at, sign_in
from tests.browser.shots import snap
from tests.support.api import Api
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e


@pytest.fixture
async def api(console: str) -> AsyncIterator[Api]:
    client = Api(console)
    yield client
    await client.close()


async def labelled(page: Page) -> None:
    """Every control a user can reach on the page has a name a screen reader says."""
    unnamed = await page.evaluate(
        """() => [...document.querySelectorAll('input, select, textarea, button')]
            .filter((el) => el.type !== 'hidden')
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                && !(el.tagName === 'BUTTON' && el.textContent.trim()))
            .map((el) => el.outerHTML)"""
    )
    assert unnamed == [], unnamed


async def test_an_operator_makes_edits_and_disables_a_campaign(page: Page, api: Api) -> None:
    await sign_in(page)
    await page.get_by_role("link", name="New campaign").click()
    await page.get_by_label("Campaign name (codeType)").fill("spring-gifts")
    await page.get_by_label("Description").fill("Spring gift cards")
    await page.get_by_label("Handler", exact=True).fill("grant-reward")
    await page.get_by_label("Retries of a failed attempt").fill("2")
    await labelled(page)
    await page.get_by_role("button", name="Create campaign").click()

    await expect(page.get_by_role("status")).to_have_text("Campaign created.")
    assert (await api.http.get("/v1/campaigns/spring-gifts", headers=api.admin)).json()[
        "maxRetries"
    ] == 2
    await page.get_by_role("link", name="Campaigns").click()
    await expect(page.get_by_role("row", name="spring-gifts")).to_contain_text("Spring gift cards")
    await page.get_by_label("Use").select_option("MULTI")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_role("cell", name="No campaign matches.")).to_be_visible()

    # Two pages read the campaign at version 1; the second save is refused, not lost.
    other = await page.context.new_page()
    for each in (page, other):
        await each.goto("/console/campaigns/spring-gifts")
    await page.get_by_label("Description").fill("Spring gift cards, 2026")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.get_by_role("status")).to_have_text("Settings saved.")
    await other.get_by_label("Description").fill("A stale change")
    await other.get_by_role("button", name="Save settings").click()
    await expect(other.get_by_role("alert")).to_contain_text("40396")
    await expect(other.get_by_label("Description")).to_have_value("Spring gift cards, 2026")
    await snap(other, "campaign-conflict")
    await other.close()

    await page.get_by_role("button", name="Disable campaign").click()
    await expect(page.get_by_role("status")).to_have_text("Campaign disabled.")
    disabled = await api.redeem("u1", "ANY-1", codeType="spring-gifts")
    assert disabled.json()["reasonCode"] == 40753  # REDEMPTION_CODE_TYPE_DISABLED
    await page.goto("/console/campaigns?state=disabled")
    await expect(page.get_by_role("row", name="spring-gifts")).to_contain_text("Disabled")
    await snap(page, "campaigns")


async def test_generated_codes_show_their_progress_and_download(
    page: Page, api: Api, tmp_path: Path
) -> None:
    await api.campaign("autumn")
    await sign_in(page)
    await page.goto("/console/campaigns/autumn")
    await page.get_by_label("How many").fill("3000")
    await page.get_by_label("State", exact=True).select_option("Available")
    await page.get_by_role("button", name="Generate").click()

    await page.wait_for_url(lambda url: "/console/jobs/" in url)
    await expect(page.get_by_role("status")).to_contain_text("Completed: 3000 of 3000")
    await expect(page.get_by_label("Codes made")).to_have_attribute("value", "3000")
    await snap(page, "generate")
    async with page.expect_download() as started:
        await page.get_by_role("link", name="Download the codes (CSV)").click()
    saved = tmp_path / "codes.csv"
    await (await started.value).save_as(saved)
    with saved.open() as lines:
        rows = list(csv.DictReader(lines))
    assert len(rows) == 3000 and len({row["scanCode"] for row in rows}) == 3000

    await page.get_by_role("link", name="autumn").click()
    await expect(page.locator("#inventory")).to_contain_text("3000")
    chart = page.get_by_role("img", name="Codes of autumn by state")
    await expect(chart).to_have_accessible_name(
        "Codes of autumn by state: "
        + ", ".join(
            f"{state} {3000 if state == 'Available' else 0}"
            for state in (
                "Inactive",
                "Available",
                "InProgress",
                "Redeemed",
                "Failed",
                "Invalidated",
            )
        )
    )
    await snap(page, "inventory")


async def test_an_import_shows_its_progress_and_its_rejected_lines(
    page: Page, api: Api, tmp_path: Path
) -> None:
    await api.campaign("retail")
    await api.code("retail", "GIFT-0001")
    lines = ["scanCode"] + [f"GIFT-{n:04}" for n in range(1, 41)] + ["bad code!", "x" * 80]
    upload = tmp_path / "codes.csv"
    upload.write_text("\n".join(lines) + "\n")
    await sign_in(page)
    await page.goto("/console/campaigns/retail")
    await page.get_by_label("File (CSV with a scanCode column, or NDJSON)").set_input_files(upload)
    await page.get_by_role("button", name="Import").click()

    report = page.locator(".import-report")
    await expect(report).to_contain_text("42 lines read: 39 added, 1 already there, 2 rejected")
    await expect(page.get_by_label("Sent")).to_have_attribute("value", "100")
    rejected = page.get_by_role("table", name="Rejected lines")
    await expect(rejected.get_by_role("row")).to_have_count(3)
    await expect(rejected).to_contain_text("40569")
    await snap(page, "import")
    await page.reload()
    await expect(page.locator("#inventory td").last).to_have_text("40")  # the total


async def test_a_code_looked_up_as_typed_shows_its_history_and_attempts(
    page: Page, api: Api
) -> None:
    await api.campaign("gifts", handler="grant-reward")
    reward = {"reward": {"item": "gems", "quantity": 500}}
    await api.code("gifts", "ABCD-EFGH-2345", customCodeInfo=reward)
    redeemed = await api.redeem("carol", "ABCD-EFGH-2345", codeType="gifts", requestId="c-1")
    assert redeemed.status_code == 200, redeemed.text
    await sign_in(page)
    await page.goto("/console/campaigns/gifts")
    await page.get_by_label("Code", exact=True).fill("abcd efgh-2345")
    await page.get_by_role("button", name="Look up").click()

    await expect(page.get_by_role("heading", name="Code ABCD-EFGH-2345")).to_be_visible()
    facts = page.get_by_role("region", name="Code ABCD-EFGH-2345")
    await expect(facts).to_contain_text("Redeemed")
    await expect(facts).to_contain_text("carol")
    attempts = page.get_by_role("region", name="Fulfillment attempts")
    await expect(attempts).to_contain_text("Attempts made")
    history = page.get_by_role("region", name="History")
    await expect(history.get_by_role("row").filter(has_text="Redeemed").first).to_be_visible()
    await snap(page, "code")
    await page.get_by_label("Code", exact=True).fill("NOPE-0000")
    await page.get_by_role("button", name="Look up").click()
    await expect(page.get_by_role("alert")).to_contain_text("40395")


async def test_redemptions_arrive_live_and_lead_to_the_users_codes(page: Page, api: Api) -> None:
    await api.campaign("live")
    await api.code("live", "LIVE-0001")
    await sign_in(page)
    await page.get_by_role("link", name="Redemptions").click()
    await expect(page.get_by_role("checkbox", name="Live")).to_be_checked()

    assert (await api.redeem("dave", "LIVE-0001", codeType="live")).status_code == 200
    assert (await api.redeem("erin", "LIVE-9999", codeType="live")).status_code == 404
    rows = page.locator("#recent tbody tr")
    await expect(rows.filter(has_text="dave")).to_contain_text("Redeemed")
    await expect(rows.filter(has_text="erin")).to_contain_text("40395")
    await expect(page.locator(".live-status")).to_contain_text("Updated")
    await snap(page, "redemptions")

    await rows.filter(has_text="dave").get_by_role("link", name="dave").click()
    await page.wait_for_url(at("/console/users"))
    codes = page.get_by_role("table", name="1 code redeemed by dave")
    await expect(codes).to_contain_text("LIVE-0001")
    await snap(page, "user")


async def test_an_operator_sees_a_lockout_and_clears_it(page: Page, api: Api) -> None:
    await api.campaign("vault", failureLimits="user=2/1h")
    await api.code("vault", "VAULT-0001")
    for n in range(2):
        assert (await api.redeem("mallory", f"WRONG-{n}", codeType="vault")).status_code == 404
    assert (await api.redeem("mallory", "VAULT-0001", codeType="vault")).status_code == 429
    listed = (await api.http.get("/v1/lockouts", headers=api.admin)).json()["items"]
    [scope] = [x["scope"] for x in listed]
    await sign_in(page)
    await page.get_by_role("link", name="Lockouts").click()

    row = page.get_by_role("row", name=scope)
    await expect(row).to_contain_text("2")
    await snap(page, "lockouts")
    await row.get_by_role("button", name=f"Clear the lockout of {scope}").click()
    await expect(page.get_by_role("status")).to_have_text(f"Lockout of {scope} cleared.")
    await expect(page.get_by_role("cell", name="No scope is locked out.")).to_be_visible()
    assert (await api.redeem("mallory", "VAULT-0001", codeType="vault")).status_code == 200


async def test_dead_letters_show_why_each_was_set_aside(
    page: Page, broker: Broker, console: str
) -> None:
    poison = json.dumps({"userId": "x", "scanCode": "SECRET-CODE-1234", "requestId": 5})
    await broker.publish(
        topology.COMMANDS_EXCHANGE, topology.REDEEM_ROUTING_KEY, b"\x00\xffnot json"
    )
    await broker.publish(topology.COMMANDS_EXCHANGE, topology.REDEEM_ROUTING_KEY, poison.encode())
    await eventually(  # each is dead-lettered in its turn; the page reads the log once
        lambda: broker.dead_letters(utcnow() - timedelta(hours=1), 10),
        until=lambda letters: len(letters) == 2,
        interval_s=0.5,
        what="both poison messages dead-lettered",
    )
    await sign_in(page)
    await page.get_by_role("link", name="Dead letters").click()

    rows = page.locator("tbody tr")
    await expect(rows.filter(has_text="40660")).to_have_count(2)
    await expect(rows.first).to_contain_text(topology.REDEEM_ROUTING_KEY)
    await rows.first.locator("summary").click()
    shown = await page.locator("pre").first.text_content()
    assert shown is not None and "SECRET-CODE-1234" not in shown and "1234" in shown
    await snap(page, "dead-letters")


async def test_every_page_passes_the_accessibility_checks_and_is_reached_by_keyboard(
    page: Page, api: Api
) -> None:
    await api.campaign("keys")
    await api.code("keys", "KEYS-0001")
    assert (await api.redeem("kim", "KEYS-0001", codeType="keys")).status_code == 200
    assert (await api.redeem("kim", "KEYS-0404", codeType="keys")).status_code == 404
    await sign_in(page)
    await page.get_by_role("link", name="Campaigns").click()  # a job to show as well
    await page.goto("/console/campaigns/keys")
    await page.get_by_label("How many").fill("10")
    await page.get_by_role("button", name="Generate").click()
    await page.wait_for_url(lambda url: "/console/jobs/" in url)
    await expect(page.get_by_role("status")).to_contain_text("Completed")
    pages = [
        urlsplit(page.url).path,
        "/console/campaigns",
        "/console/campaigns/new",
        "/console/campaigns/keys",
        "/console/campaigns/keys/code?scanCode=keys-0001",
        "/console/redemptions",
        "/console/users?userId=kim",
        "/console/lockouts",
        "/console/dead-letters",
    ]
    for path in pages:
        await page.goto(path)
        await labelled(page)
        assert await violations(page) == [], path
    await page.context.clear_cookies()
    await page.goto("/console/login")
    assert await violations(page) == [], "/console/login"

    await sign_in(page)
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.keyboard.press("Enter")
    for _ in range(12):
        await page.keyboard.press("Tab")
        if await page.get_by_role("link", name="New campaign").evaluate(
            "(el) => el === document.activeElement"
        ):
            break
    await expect(page.get_by_role("link", name="New campaign")).to_be_focused()
    await page.keyboard.press("Enter")
    await page.wait_for_url(at("/console/campaigns/new"))
