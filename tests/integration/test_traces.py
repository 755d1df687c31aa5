"""One trace from the HTTP request through the work queue, the worker and its fulfillment
call, the outbox and the relay, to the event an observer receives: W3C trace context in
the messages' headers and beside each stored event, on the real broker and both stores."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pymongo import AsyncMongoClient

from services.results.relay import Relay
from services.worker.bootstrap import bootstrap
from services.worker.consumer import WorkConsumer
from shared import topology
from shared.adapters.documents import Doc
from shared.adapters.mongodb import MongoStore
from shared.adapters.rabbitmq import Broker
from shared.adapters.sqlite import SqliteStore
from shared.clock import utcnow
from shared.domain.model import Campaign, Code, CodeRef, CodeUseType
from shared.domain.states import CodeState
from shared.handlers.grant_reward import grant_reward
from shared.ports import Store
from shared.runtime.settings import Settings
from tests.conftest import MAX_DELIVERIES
from tests.support.amqp import Tap
from tests.support.wait import eventually
from tests.unit.intake_harness import RecordingBroker, intake_client

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
EXPORTER = InMemorySpanExporter()
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture(scope="module", autouse=True)
def recorded() -> Iterator[None]:
    """Spans recorded in memory: the process's tracer provider, set once."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
        trace.set_tracer_provider(provider)
    yield


@pytest.fixture(params=["mongodb", "sqlite"])
async def a_store(
    request: pytest.FixtureRequest,
    mongo_client: AsyncMongoClient[Doc],
    db_name: str,
    tmp_path: Path,
) -> Any:
    store: Store = (
        MongoStore(mongo_client[db_name])
        if request.param == "mongodb"
        else SqliteStore(tmp_path / "store.sqlite3")
    )
    await store.prepare()
    yield store
    await store.close()


def named(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    [span] = [s for s in spans if s.name == name]
    return span


async def test_one_trace_spans_the_intake_the_worker_its_call_and_the_relay(
    a_store: Store, broker: Broker
) -> None:
    store = a_store
    await store.create_campaign(
        Campaign("gems", CodeUseType.SINGLE, NOW, NOW, handler="grant-reward")
    )
    reward = {"reward": {"item": "gems", "quantity": 1}}
    await store.add_code(
        Code("c1", "gems", "ABC", CodeState.AVAILABLE, NOW, NOW, custom_code_info=reward)
    )
    worker = bootstrap(store, {"grant-reward": grant_reward}, campaign_cache_ttl_s=0).redeem
    consumer = WorkConsumer(worker, broker, utcnow, max_deliveries=MAX_DELIVERIES)
    events = await Tap.on(broker, topology.EVENTS_EXCHANGE, "code.redeemed")
    settings = Settings(api_keys="redeem-key=redeem")
    EXPORTER.clear()
    await consumer.start()
    try:
        intake = cast(RecordingBroker, broker)  # the real broker, publishing for real
        async with intake_client(store, intake, settings) as (http, _):
            answer = await http.post(
                "/v1/redemptions",
                headers={"Authorization": "Bearer redeem-key", "traceparent": TRACEPARENT},
                json={"userId": "u1", "scanCode": "ABC", "codeType": "gems"},
            )
        assert answer.status_code == 202, answer.text
        await eventually(
            lambda: store.get_code(CodeRef("gems", "ABC")),
            until=lambda c: c is not None and c.code_state is CodeState.REDEEMED,
            what="the code redeemed",
        )
        relay = Relay(store, broker, batch=10, idle_s=0.05)
        await eventually(relay.relay_once, until=lambda _: bool(events.messages), what="relayed")
        [message] = await events.wait_for(1)
    finally:
        await consumer.stop()
        await events.close()

    spans = list(EXPORTER.get_finished_spans())
    server = named(spans, "POST /v1/redemptions")
    redeem, call = named(spans, "redeem"), named(spans, "fulfil grant-reward")
    relayed = named(spans, "relay code.redeemed")
    assert {format(s.context.trace_id, "032x") for s in (server, redeem, call, relayed)} == {
        TRACE_ID
    }
    assert (server.kind, redeem.kind, call.kind, relayed.kind) == (
        SpanKind.SERVER,
        SpanKind.CONSUMER,
        SpanKind.CLIENT,
        SpanKind.PRODUCER,
    )
    assert server.parent is not None and server.parent.span_id == int(TRACEPARENT[36:52], 16)
    assert redeem.parent is not None and redeem.parent.span_id == server.context.span_id
    assert call.parent is not None and call.parent.span_id == redeem.context.span_id
    assert relayed.parent is not None and relayed.parent.span_id == redeem.context.span_id
    header = str((message.headers or {})["traceparent"])
    assert header.split("-")[1:3] == [TRACE_ID, format(relayed.context.span_id, "016x")]
