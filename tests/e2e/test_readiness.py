"""Readiness that tells whether a service can work: a worker is ready when its store and
broker answer, its queues are consumed and its timer loop runs; `results` when its relay
completes passes. On SIGTERM a worker turns unready first, then finishes the job it holds
(a fulfillment call included) before it exits."""

from __future__ import annotations

import signal
from typing import Any

import httpx
import pytest

from bench.support.processes import Service, System
from tests.support.api import Api
from tests.support.wait import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]
# Long enough that the worker is still in the call when it is told to stop.
CALL_S = 10


async def ready(service: Service) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=service.url, timeout=10) as http:
        answer = await http.get("/readyz")
    return answer.status_code, answer.json()


async def test_a_stopping_worker_is_unready_and_finishes_its_call(system: System) -> None:
    intake, worker, results = system.start_all("intake", "worker", "results")
    partner = system.start(
        "partner", REDEEM_PARTNER_HANDLER="slow", REDEEM_PARTNER_DELAY_S=str(CALL_S)
    )
    assert await ready(worker) == (
        200,
        {"store": "ok", "broker": "ok", "consumers": "ok", "timers": "ok"},
    )
    assert await ready(results) == (200, {"store": "ok", "broker": "ok", "relay": "ok"})
    api = Api(intake.url)
    try:
        await api.campaign("slow", handler="slow", handlerTransport="amqp", timeout=3 * CALL_S)
        await api.code("slow", "SLOW-1")
        accepted = await api.redeem("ann", "SLOW-1", codeType="slow", wait=None)
        rid = accepted.json()["redemptionId"]

        async def calls() -> list[Any]:
            async with httpx.AsyncClient(base_url=partner.url) as http:
                return list((await http.get("/requests")).json())

        await eventually(calls, what="the partner called", timeout_s=60)
        worker.process.send_signal(signal.SIGTERM)

        _, body = await eventually(
            lambda: ready(worker), until=lambda r: r[0] == 503, what="the worker unready"
        )
        assert body["service"] == "stopping"
        assert worker.alive  # still finishing the call
        record = await eventually(
            lambda: api.redemption(rid),
            until=lambda a: a.json().get("status") == "Redeemed",
            timeout_s=3 * CALL_S,
            what="the call finished by the stopping worker",
        )
        assert record.json()["code"]["attemptState"] == "Succeeded"
        assert worker.process.wait(30) == 0
    finally:
        await api.close()
