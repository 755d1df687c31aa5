"""Exporting traces: by OTLP over HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, as OpenTelemetry's other `OTEL_*`
variables configure it; otherwise spans are not recorded."""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def configure(service: str) -> bool:
    """Record and export this process's spans, named for `service` unless
    `OTEL_SERVICE_NAME` says otherwise; whether an endpoint was set."""
    if not any(os.environ.get(name) for name in ENDPOINTS):
        return False
    name = os.environ.get("OTEL_SERVICE_NAME") or f"redeem-{service}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True
