"""Guessing defences through the running system, on both stores: operators see every
lockout, however many scopes with guesses left lie between them; the address counted
is the connection's unless a trusted proxy names another, and an IPv6 caller is counted
by its /64."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bench.support.processes import System
from tests.conftest import running
from tests.support.api import Api

LOCKED = 40765


@pytest.fixture
def throttled(each_store_env: dict[str, str], tmp_path: Path) -> Iterator[System]:
    """The system, counting 3 failures per user in 15 minutes."""
    with running({**each_store_env, "REDEEM_FAILURE_LIMITS": "user=3/15m"}, tmp_path) as system:
        yield system


@pytest.fixture
def by_address(each_store_env: dict[str, str], tmp_path: Path) -> Iterator[System]:
    """The system, counting 3 failures per client address in 15 minutes (not per user)."""
    limits = {"REDEEM_FAILURE_LIMITS": "user=off,address=3/15m"}
    with running({**each_store_env, **limits}, tmp_path) as system:
        yield system


@asynccontextmanager
async def started(system: System, **env: str) -> AsyncIterator[Api]:
    system.env.update(env)
    intake, _, _ = system.start_all("intake", "worker", "results")
    api = Api(intake.url)
    try:
        yield api
    finally:
        await api.close()


async def guess(api: Api, user: str, n: int, **headers: str) -> int:
    answer = await api.http.post(
        "/v1/redemptions",
        headers={**api.redeemer, **headers},
        params={"wait": 20},
        json={"userId": user, "scanCode": f"WRONG-{n}", "codeType": "gems"},
    )
    return answer.status_code


async def listed(api: Api, **params: str | int) -> tuple[list[str], str | None]:
    page = (await api.http.get("/v1/lockouts", headers=api.admin, params=params)).json()
    return [x["scope"] for x in page["items"]], page["after"]


async def test_lockouts_behind_scopes_with_guesses_left_are_listed_page_by_page(
    throttled: System,
) -> None:
    async with started(throttled) as api:
        await api.campaign("gems")
        for user in ("ann", "bob", "cat", "dan", "eve"):
            assert await guess(api, user, 0) == 404
        assert [await guess(api, "zed", n) for n in range(4)] == [404, 404, 404, 429]
        assert await listed(api, limit=3) == (["user:zed"], None)

        assert [await guess(api, "bob", n) for n in (1, 2)] == [404, 404]
        assert await listed(api, limit=1) == (["user:bob"], "user:bob")
        assert await listed(api, limit=1, after="user:bob") == (["user:zed"], None)


async def test_x_forwarded_for_from_a_caller_not_trusted_is_ignored(by_address: System) -> None:
    async with started(by_address) as api:
        await api.campaign("gems")
        forged = {"X-Forwarded-For": "203.0.113.9"}

        answers = [await guess(api, f"user-{n}", n, **forged) for n in range(4)]

        assert answers == [404, 404, 404, 429]
        assert await listed(api) == (["address:127.0.0.1"], None)


async def test_behind_a_trusted_proxy_an_ipv6_caller_counts_by_its_64(by_address: System) -> None:
    async with started(by_address, REDEEM_FORWARDED_ALLOW_IPS="127.0.0.1,::1") as api:
        await api.campaign("gems")
        rotating = [f"2001:db8:7:8::{n + 1:x}" for n in range(4)]

        answers = [
            await guess(api, f"user-{n}", n, **{"X-Forwarded-For": address})
            for n, address in enumerate(rotating)
        ]
        elsewhere = await guess(api, "user-x", 9, **{"X-Forwarded-For": "2001:db8:7:9::1"})

        assert (answers, elsewhere) == ([404, 404, 404, 429], 404)
        assert await listed(api) == (["address:2001:db8:7:8::/64"], None)
        lifted = await api.http.delete("/v1/lockouts/address:2001:db8:7:8::/64", headers=api.admin)
        assert lifted.json() == {"scope": "address:2001:db8:7:8::/64", "cleared": True}
