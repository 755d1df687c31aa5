"""Traces (OpenTelemetry): one trace from a redemption's request through the work queue,
the worker and its fulfillment call, and the relay, to the event observers receive.
Between processes the trace context travels as W3C trace context (`traceparent`,
`tracestate`) in message headers; across the outbox it is kept beside each stored
event (`trace`), so that the relay's span continues the worker's.

Without an SDK configured (`shared.runtime.tracing.configure`) the spans record nothing
and no context is passed on: tracing costs a request next to nothing.

Beside the trace, the time the redemption being worked on was accepted (`accepted`),
which each stored event keeps too, so that the relay measures acceptance to event."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context

TRACER = trace.get_tracer("redemption-codes")
ACCEPTED_AT: ContextVar[datetime | None] = ContextVar("accepted_at", default=None)
_FIELDS = ("traceparent", "tracestate")


def recording() -> bool:
    """Whether this process records spans (an SDK is configured): else the spans cost
    next to nothing, and no trace context is passed on."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def carrier() -> dict[str, str]:
    """The current trace context as headers (empty outside a trace, or not recording)."""
    if not recording():
        return {}
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return {k: v for k, v in headers.items() if k in _FIELDS}


def continued(headers: Mapping[str, Any] | None) -> Context:
    """The trace context `headers` carry, to start a span in (a new trace if none)."""
    return propagate.extract({k: str(v) for k, v in (headers or {}).items() if k in _FIELDS})


@contextmanager
def accepted(at: datetime) -> Iterator[None]:
    """Within: the events written are of a redemption accepted `at`."""
    token = ACCEPTED_AT.set(at)
    try:
        yield
    finally:
        ACCEPTED_AT.reset(token)
