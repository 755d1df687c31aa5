"""Operators see every lockout: GET /v1/lockouts reads past the windows with room left
and pages on while more may follow, and `redeem lockouts list` follows every page."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import httpx
import pytest
from rich.console import Console

from services.cli import lockouts as cli
from services.cli.client import Api
from shared.domain.throttling import Caller
from shared.runtime.settings import Settings
from tests.fakes import FakeStore
from tests.unit.intake_harness import RecordingBroker, intake_client

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SETTINGS = Settings(api_keys="admin-key=admin", context_secret="s", failure_limits="user=3/1h")
ADMIN = {"Authorization": "Bearer admin-key"}


async def test_a_lockout_behind_windows_with_room_left_is_listed() -> None:
    async with intake_client(FakeStore(), RecordingBroker(), SETTINGS, lambda: NOW) as (
        api,
        intake,
    ):
        for user in "abcde":
            await intake.budget.reserve(f"{user}-0", Caller(user))
        for n in range(3):
            await intake.budget.reserve(f"z-{n}", Caller("z"))

        page = (await api.get("/v1/lockouts", headers=ADMIN, params={"limit": 3})).json()
        assert ([x["scope"] for x in page["items"]], page["after"]) == (["user:z"], None)

        for n in (1, 2):
            await intake.budget.reserve(f"b-{n}", Caller("b"))
        first = (await api.get("/v1/lockouts", headers=ADMIN, params={"limit": 1})).json()
        assert ([x["scope"] for x in first["items"]], first["after"]) == (["user:b"], "user:b")
        params = {"limit": 1, "after": first["after"]}
        second = (await api.get("/v1/lockouts", headers=ADMIN, params=params)).json()
        assert ([x["scope"] for x in second["items"]], second["after"]) == (["user:z"], None)


def test_the_command_line_lists_the_lockouts_of_every_page_even_past_an_empty_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lockout = {
        "scope": "user:z",
        "failures": 3,
        "limit": {"failures": 3, "windowSeconds": 3600},
        "retryAfterSeconds": 60,
    }
    pages = {None: {"items": [], "after": "user:e"}, "user:e": {"items": [lockout], "after": None}}
    asked: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("after")
        asked.append(after)
        return httpx.Response(200, json=pages[after])

    @contextmanager
    def connect() -> Iterator[Api]:
        transport = httpx.MockTransport(answer)
        with httpx.Client(base_url="http://intake", transport=transport) as http:
            yield Api(http)

    monkeypatch.setattr(cli, "connect", connect)
    monkeypatch.setattr(cli, "console", Console(width=200))
    cli.list_lockouts()

    assert asked == [None, "user:e"]
    assert "user:z" in capsys.readouterr().out
