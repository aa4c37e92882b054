"""OpenTelemetry tracing across the pipeline: HTTP request → Kafka record → ClickHouse write.

The W3C `traceparent` of the span that published a batch travels in the Kafka record's headers *and* in the
envelope (so it survives tools that drop headers). Consumers continue that trace: one span per stored batch,
a child of the first envelope's context with links to every other one. Without a configured SDK (the default)
the OpenTelemetry API is a no-op; operators export spans by installing an SDK exporter (e.g. OTLP).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_PROPAGATOR = TraceContextTextMapPropagator()


def tracer(service: str) -> trace.Tracer:
    return trace.get_tracer(f"spendstream.{service}")


def context_from_headers(headers: Mapping[str, str]) -> Context:
    """The remote parent named by a `traceparent` header, or an empty context."""
    return _PROPAGATOR.extract({k.lower(): v for k, v in headers.items()})


def current_traceparent() -> str | None:
    """The `traceparent` of the current span, to put on outgoing records; None when not tracing."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def parent_and_links(traceparents: Sequence[str | None]) -> tuple[Context | None, list[Link]]:
    """For a span that handles many records: the first record's context as parent, links to all of them."""
    contexts = [context_from_headers({"traceparent": tp}) for tp in traceparents if tp]
    links = []
    for ctx in contexts:
        span_context = trace.get_current_span(ctx).get_span_context()
        if span_context.is_valid:
            links.append(Link(span_context))
    return (contexts[0] if contexts else None), links
