"""The console's defences over HTTP, in process: who may sign in, what the session cookie
holds and how long it lasts, CSRF on every form, the campaigns a limited key sees, and
refusals that change nothing. The journeys in a real browser are tests/browser."""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.routing import APIRoute
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from services.intake.console import access, activity, campaigns
from services.intake.console.sessions import COOKIE, SIGN_IN_COOKIE
from shared.domain.access import digest_of
from shared.ports.broker import DeadLetter
from shared.runtime.settings import Settings
from tests.fakes import FakeStore
from tests.unit.intake_harness import RecordingBroker, intake_client

SECRET = "console-secret"
SETTINGS = Settings(
    api_keys="admin-key=admin;redeem-key=redeem;gems-key=admin|campaigns=gems",
    context_secret="secret",
    console_secret=SECRET,
)
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
async def client(store: FakeStore) -> AsyncIterator[httpx.AsyncClient]:
    async with intake_client(store, RecordingBroker(), SETTINGS) as (http, _):
        yield http


async def sign_in(http: httpx.AsyncClient, key: str = "admin-key") -> httpx.Response:
    form = await http.get("/console/login")
    token = CSRF.search(form.text)
    assert token is not None
    return await http.post("/console/login", data={"csrf": token.group(1), "key": key})


async def with_gems(http: httpx.AsyncClient) -> str:
    """Signed in as the admin, with a campaign `gems`: the session's CSRF token."""
    await sign_in(http)
    token = await csrf_of(http)
    made = await http.post("/console/campaigns", data={"csrf": token, "codeType": "gems"})
    assert made.status_code == 303, made.text
    return token


async def csrf_of(http: httpx.AsyncClient, path: str = "/console/campaigns") -> str:
    page = await http.get(path)
    token = CSRF.search(page.text)
    assert token is not None, page.text
    return token.group(1)


async def test_an_admin_key_signs_in_to_a_cookie_that_keeps_no_key(
    client: httpx.AsyncClient,
) -> None:
    answer = await sign_in(client)
    assert answer.status_code == 303 and answer.headers["location"] == "/console/campaigns"
    cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith(COOKIE))
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "samesite", "path"} <= attributes
    assert "samesite=strict" in cookie.lower() and "path=/console" in cookie.lower()
    assert "admin-key" not in cookie
    assert (await client.get("/console/campaigns")).status_code == 200


@pytest.mark.parametrize(
    ("key", "reason"), [("nobody", "90401"), ("redeem-key", "90403"), ("", "90401")]
)
async def test_a_key_without_the_admin_role_is_refused_with_its_reason(
    client: httpx.AsyncClient, key: str, reason: str
) -> None:
    answer = await sign_in(client, key)
    assert answer.status_code in (401, 403)
    assert reason in answer.text and 'role="alert"' in answer.text
    assert COOKIE not in answer.cookies
    assert (await client.get("/console/campaigns")).headers["location"] == "/console/login"


async def test_the_sign_in_form_needs_its_own_token(client: httpx.AsyncClient) -> None:
    await client.get("/console/login")
    answer = await client.post("/console/login", data={"csrf": "forged", "key": "admin-key"})
    assert answer.status_code == 403
    assert COOKIE not in answer.cookies
    client.cookies.delete(SIGN_IN_COOKIE)
    answer = await client.post("/console/login", data={"key": "admin-key"})
    assert answer.status_code == 403


def console_routes(method: str) -> list[str]:
    return sorted(
        route.path
        for area in (access, activity, campaigns)
        for route in area.router.routes
        if isinstance(route, APIRoute) and method in (route.methods or ())
    )


POSTS = [path for path in console_routes("POST") if path != "/console/login"]
PAGES = [path for path in console_routes("GET") if path != "/console/login"]


def concrete(path: str) -> str:
    return path.replace("{codeType}", "gems").replace("{jobId}", "job-1")


@pytest.mark.parametrize("path", POSTS)
async def test_every_form_is_refused_without_its_sessions_token(
    client: httpx.AsyncClient, store: FakeStore, path: str
) -> None:
    await with_gems(client)
    before = (dict(store.campaigns), dict(store.codes), dict(store.jobs))
    for token in (None, "forged"):
        data = {"codeType": "other", "version": "1", "quantity": "5", "scope": "user:u"}
        if token is not None:
            data["csrf"] = token
        answer = await client.post(concrete(path), data=data)
        assert answer.status_code == 403, (path, answer.text)
        assert "did not carry its session's token" in answer.text
    assert (dict(store.campaigns), dict(store.codes), dict(store.jobs)) == before
    assert (await client.get("/console/campaigns")).status_code == 200  # still signed in


@pytest.mark.parametrize("path", PAGES)
async def test_every_page_sends_the_signed_out_to_sign_in(
    client: httpx.AsyncClient, path: str
) -> None:
    answer = await client.get(concrete(path))
    assert answer.status_code == 303 and answer.headers["location"] == "/console/login"
    if path == "/console":
        return
    scripted = await client.get(concrete(path), headers={"X-CSRF-Token": "any"})
    assert scripted.status_code == 401  # the page's script is told, not sent elsewhere


async def test_a_forged_or_stale_cookie_is_no_session(client: httpx.AsyncClient) -> None:
    await sign_in(client)
    good = client.cookies[COOKIE]
    client.cookies.clear()
    client.cookies.set(COOKIE, good[:-2] + ("AA" if not good.endswith("AA") else "BB"))
    assert (await client.get("/console/campaigns")).status_code == 303

    class Then(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - int(SETTINGS.console_session_s) - 60

    stale = URLSafeTimedSerializer(SECRET, salt="redeem-console-session", signer=Then).dumps(
        {"k": digest_of("admin-key"), "c": "token"}
    )
    client.cookies.clear()
    client.cookies.set(COOKIE, stale)
    assert (await client.get("/console/campaigns")).status_code == 303
    other = URLSafeTimedSerializer("another-secret", salt="redeem-console-session")
    client.cookies.clear()
    client.cookies.set(COOKIE, other.dumps({"k": digest_of("admin-key"), "c": "token"}))
    assert (await client.get("/console/campaigns")).status_code == 303


async def test_a_key_taken_out_of_the_keys_ends_its_sessions(store: FakeStore) -> None:
    async with intake_client(store, RecordingBroker(), SETTINGS) as (http, _):
        await sign_in(http)
        cookie = http.cookies[COOKIE]
    fewer = SETTINGS.model_copy(update={"api_keys": "other-key=admin"})
    async with intake_client(store, RecordingBroker(), fewer) as (http, _):
        http.cookies.set(COOKIE, cookie)
        assert (await http.get("/console/campaigns")).status_code == 303


async def test_pages_forbid_what_is_not_the_intakes_own(client: httpx.AsyncClient) -> None:
    await sign_in(client)
    page = await client.get("/console/campaigns")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert page.headers["cache-control"] == "no-store"
    assert not re.search(r'(src|href)="(https?:)?//', page.text)  # nothing from elsewhere
    static = await client.get("/console/static/console.js")
    assert static.status_code == 200 and "fetch(" in static.text


async def test_a_key_limited_to_campaigns_sees_only_those(client: httpx.AsyncClient) -> None:
    await sign_in(client)
    token = await csrf_of(client)
    for name in ("gems", "coins"):
        created = await client.post("/console/campaigns", data={"csrf": token, "codeType": name})
        assert created.status_code == 303
    made = await client.post(
        "/console/campaigns/coins/generate", data={"csrf": token, "quantity": "5"}
    )
    job = made.headers["location"].removeprefix("/console/jobs/")
    client.cookies.clear()
    await sign_in(client, "gems-key")
    listed = await client.get("/console/campaigns")
    assert ">gems<" in listed.text and ">coins<" not in listed.text
    for path in (
        "/console/campaigns/coins",
        "/console/campaigns/coins/code?scanCode=X",
        "/console/campaigns/coins/export.csv",
        f"/console/jobs/{job}",
        f"/console/jobs/{job}.json",
        f"/console/jobs/{job}/codes.csv",
        "/console/redemptions?codeType=coins",
        "/console/dead-letters",
    ):
        refused = await client.get(path)
        assert refused.status_code == 403 and "90403" in refused.text, path
    token = await csrf_of(client)
    made = await client.post("/console/campaigns", data={"csrf": token, "codeType": "gold"})
    assert made.status_code == 403 and "90403" in made.text


async def test_a_refused_form_says_why_and_changes_nothing(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    await sign_in(client)
    token = await csrf_of(client)
    bad = {"csrf": token, "codeType": "gems", "maxRetries": "many"}
    answer = await client.post("/console/campaigns", data=bad)
    assert answer.status_code == 422 and "40660" in answer.text and "maxRetries" in answer.text
    assert 'value="gems"' in answer.text  # what was typed is kept
    window = {"csrf": token, "codeType": "gems", "validStart": "2030-01-02T00:00"}
    window["validEnd"] = "2029-01-01T00:00"
    answer = await client.post("/console/campaigns", data=window)
    assert answer.status_code == 422 and 'role="alert"' in answer.text
    assert store.campaigns == {}


async def test_an_edit_from_a_stale_page_is_refused_and_shows_the_campaign_as_it_is(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    token = await with_gems(client)
    edit = {"csrf": token, "version": "1", "description": "first", "maxRetries": "0"}
    edit["timeout"] = "30"
    assert (await client.post("/console/campaigns/gems/edit", data=edit)).status_code == 303
    stale = {**edit, "description": "second"}
    answer = await client.post("/console/campaigns/gems/edit", data=stale)
    assert answer.status_code == 409 and "40396" in answer.text
    assert 'value="first"' in answer.text and 'name="version" value="2"' in answer.text
    assert store.campaigns["gems"].description == "first"


async def test_what_operators_typed_is_shown_as_text(client: httpx.AsyncClient) -> None:
    await sign_in(client)
    token = await csrf_of(client)
    script = "<script>alert(1)</script>"
    await client.post(
        "/console/campaigns", data={"csrf": token, "codeType": "gems", "description": script}
    )
    for path in ("/console/campaigns", "/console/campaigns/gems"):
        page = await client.get(path)
        assert script not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


async def test_instants_are_typed_and_shown_in_utc(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    await sign_in(client)
    token = await csrf_of(client)
    form = {"csrf": token, "codeType": "gems", "validStart": "2030-01-02T03:04"}
    await client.post("/console/campaigns", data=form)
    assert store.campaigns["gems"].valid_start == datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    page = await client.get("/console/campaigns/gems")
    assert 'value="2030-01-02T03:04"' in page.text


class Log:
    """A dead-letter log holding what it is given, or failing as a broker down would."""

    def __init__(self, letters: list[DeadLetter] | None = None) -> None:
        self.letters = letters
        self.asked: list[tuple[datetime, int]] = []

    async def dead_letters(self, since: datetime, limit: int) -> list[DeadLetter]:
        self.asked.append((since, limit))
        if self.letters is None:
            raise ConnectionError("the broker is gone")
        return self.letters


async def test_dead_letters_show_their_reasons_and_mask_the_codes_they_carry(
    store: FakeStore,
) -> None:
    job = json.dumps({"userId": "u", "scanCode": "SECRET-CODE-9876"}).encode()
    letter = DeadLetter(
        at=datetime(2026, 11, 26, 12, 0, tzinfo=UTC),
        routing_key="redeem",
        reason_code=40660,
        reason="40660 INVALID_PARAMETER_VALUE: requestId: Field required",
        message_id="m-1",
        body=job,
        size=len(job),
    )
    raw = b'\x00{"scanCode": "SECRET-CODE-5555"'  # not JSON: shown as nothing but its size
    cut = json.dumps({"scanCode": "SECRET-CODE-7777", "pad": "x" * 100}).encode()
    others = [
        dataclasses.replace(letter, body=raw, size=len(raw)),
        dataclasses.replace(letter, body=cut[:40], size=len(cut)),  # kept cut short
    ]
    async with intake_client(store, RecordingBroker(), SETTINGS) as (http, _):
        log = Log([letter, *others])
        http._transport.app.state.dead_letters = log  # type: ignore[attr-defined]
        await sign_in(http)
        page = await http.get("/console/dead-letters?since=1h")
        assert "40660 INVALID_PARAMETER_VALUE: requestId: Field required" in page.text
        assert "SECRET-CODE-9876" not in page.text and "9876" in page.text
        assert "5555" not in page.text and "7777" not in page.text
        assert f"({len(raw)} bytes that are not whole JSON: not shown" in page.text
        since, limit = log.asked[0]
        assert timedelta(minutes=59) < datetime.now(UTC) - since < timedelta(minutes=61)
        assert limit >= 1
        refused = await http.get("/console/dead-letters?since=forever")
        assert refused.status_code == 422 and "40660" in refused.text

        http._transport.app.state.dead_letters = Log(None)  # type: ignore[attr-defined]
        down = await http.get("/console/dead-letters")
        assert down.status_code == 503 and "the broker is gone" in down.text


async def test_an_import_from_a_plain_form_reports_its_rejected_lines(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    token = await with_gems(client)
    upload = b"scanCode\nGEM-0001\nGEM-0002\nbad code!\n"
    answer = await client.post(
        "/console/campaigns/gems/import-form",
        data={"csrf": token},
        files={"file": ("codes.csv", upload, "text/csv")},
    )
    assert answer.status_code == 200, answer.text
    assert "3 lines read: 2 added, 0 already there, 1 rejected." in answer.text
    assert "<td>4</td><td>40569</td>" in answer.text
    assert sorted(key for (_, key) in store.codes) == ["GEM0001", "GEM0002"]
    scripted = await client.post(
        "/console/campaigns/gems/import",
        content=b"scanCode\nGEM-0003\n",
        headers={"X-CSRF-Token": token, "Content-Type": "text/csv"},
    )
    assert scripted.status_code == 200 and "1 added" in scripted.text
    assert len(store.codes) == 3


async def test_an_edit_keeps_what_the_form_could_not_show_and_says_no_as_no(
    client: httpx.AsyncClient, store: FakeStore
) -> None:
    await sign_in(client)
    token = await csrf_of(client)
    form = {"csrf": token, "codeType": "gems", "uniformRefusals": "false"}
    await client.post("/console/campaigns", data=form)
    assert store.campaigns["gems"].uniform_refusals is False
    end = datetime(2031, 5, 6, 7, 8, 9, 123000, tzinfo=UTC)  # seconds a form does not show
    store.campaigns["gems"] = dataclasses.replace(store.campaigns["gems"], valid_end=end)
    page = await client.get("/console/campaigns/gems")
    shown = dict(re.findall(r'name="([A-Za-z-]+)"[^>]*value="([^"]*)"', page.text))
    assert shown["validEnd"] == shown["validEnd-shown"] == "2031-05-06T07:08"
    edit = {**shown, "csrf": token, "description": "only this"}
    assert (await client.post("/console/campaigns/gems/edit", data=edit)).status_code == 303
    assert store.campaigns["gems"].valid_end == end
    assert store.campaigns["gems"].description == "only this"
    moved = {**edit, "version": "2", "validEnd": "2031-05-06T09:00"}
    assert (await client.post("/console/campaigns/gems/edit", data=moved)).status_code == 303
    assert store.campaigns["gems"].valid_end == datetime(2031, 5, 6, 9, 0, tzinfo=UTC)


async def test_a_file_over_the_import_limit_is_refused_as_a_page(store: FakeStore) -> None:
    small = SETTINGS.model_copy(update={"max_import_bytes": 1_000})
    async with intake_client(store, RecordingBroker(), small) as (http, _):
        token = await with_gems(http)
        upload = b"scanCode\n" + b"".join(b"GEM-%06d\n" % n for n in range(200))
        answer = await http.post(
            "/console/campaigns/gems/import-form",
            data={"csrf": token},
            files={"file": ("codes.csv", upload, "text/csv")},
        )
        assert answer.status_code == 422 and answer.headers["content-type"].startswith("text/html")
        assert "40660" in answer.text and 'role="alert"' in answer.text
        assert store.codes == {}
