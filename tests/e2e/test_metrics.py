"""Every service's `/metrics` after a run of redemptions: outcomes and reasons, latencies,
jobs in flight and redeliveries, the backlogs (outbox, timers, work and dead-letter
queues), HTTP requests by route and status, and lockouts, each with plausible values."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared import topology
from tests.conftest import running
from tests.support.api import Api
from tests.support.wait import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{url}/metrics")).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The sample of `name` with these labels (among others), summed over the rest."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls]
    return sum(found) if found else None


async def test_every_service_serves_its_metrics_after_a_run_of_redemptions(
    each_store_env: dict[str, str], tmp_path: Path
) -> None:
    env = each_store_env | {"REDEEM_FAILURE_LIMITS": "user=2/15m", "REDEEM_GAUGES_EVERY_S": "0.2"}
    with running(env, tmp_path) as system:
        intake, worker, results = system.start_all("intake", "worker", "results")
        api = Api(intake.url)
        try:
            await api.campaign("gems")
            for scan in ("A1", "A2"):
                await api.code("gems", scan)
            redeemed = [await api.redeem(f"u{n}", f"A{n}", codeType="gems") for n in (1, 2)]
            guesses = [await api.redeem("guesser", f"NOPE{n}", codeType="gems") for n in range(3)]
            missing = await api.http.get("/v1/no-such-route", headers=api.admin)
        finally:
            await api.close()

        assert [r.json()["codeState"] for r in redeemed] == ["Redeemed", "Redeemed"]
        assert [r.status_code for r in guesses[:2]] == [404, 404]
        assert guesses[2].status_code == 429 and missing.status_code == 404

        front = await scrape(intake.url)
        assert value(front, "http_requests_total", route="/v1/redemptions", status="200") == 2
        assert value(front, "http_requests_total", route="/v1/redemptions", status="404") == 2
        assert value(front, "http_requests_total", route="/v1/redemptions", status="429") == 1
        assert value(front, "http_requests_total", route="unmatched", status="404") == 1
        timed = value(front, "http_request_duration_seconds_count", route="/v1/redemptions")
        assert timed == 5
        assert value(front, "redemption_lockouts_total", where="intake") == 1
        assert value(front, "redemptions_accepted_total") == 4

        work = await scrape(worker.url)
        assert value(work, "redemption_outcomes_total", status="Redeemed") == 2
        assert value(work, "redemption_outcomes_total", status="Rejected") == 2
        ended = value(work, "redemption_accepted_to_ended_seconds_count", status="Redeemed")
        took = value(work, "redemption_accepted_to_ended_seconds_sum", status="Redeemed")
        assert ended == 2 and took is not None and 0 < took < 60
        assert value(work, "redemption_consumer_in_flight", queue=topology.WORK_QUEUE) == 0
        assert value(work, "redemption_consumer_redeliveries_total", queue=topology.WORK_QUEUE) == 0
        assert value(work, "redemption_lockouts_total", where="worker") == 0
        waited = value(work, "redemption_queue_wait_seconds_count")
        assert waited == 4 and 0 < (value(work, "redemption_queue_wait_seconds_sum") or 0) < 60

        def drained(samples: Samples) -> bool:
            relayed = value(samples, "redemption_events_relayed_total", routing_key="code.redeemed")
            return relayed == 2 and value(samples, "redemption_outbox_events") == 0

        back = await eventually(
            lambda: scrape(results.url),
            until=drained,
            timeout_s=60,
            what="the outbox relayed and sampled empty",
        )
        to_event = value(
            back, "redemption_accepted_to_event_seconds_count", routing_key="code.redeemed"
        )
        took_event = value(
            back, "redemption_accepted_to_event_seconds_sum", routing_key="code.redeemed"
        )
        assert to_event == 2 and took_event is not None and 0 < took_event < 60
        assert value(back, "redemption_outbox_oldest_age_seconds") == 0
        assert value(back, "redemption_timers", state="set") == 0
        assert value(back, "redemption_timers", state="due") == 0
        for queue in (topology.WORK_QUEUE, topology.DEAD_LETTER_QUEUE):
            assert value(back, "redemption_queue_messages", queue=queue) == 0
