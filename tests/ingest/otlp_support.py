"""What the OTLP tests share: ingest and rollup behind a real uvicorn (the OpenTelemetry exporters speak real
HTTP, from their own threads), and GenAI spans recorded by the real OpenTelemetry SDK."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import uvicorn
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spendstream.common.service import Service, build_http_app
from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.settings import IngestSettings
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.settings import RollupSettings
from tests.support import Isolation, free_port


def ingest_and_rollup(iso: Isolation) -> list[Service]:
    return [
        create_ingest(iso.settings(IngestSettings)),
        create_rollup(iso.settings(RollupSettings, batch_timeout_ms=50)),
    ]


@contextmanager
def live(services: Sequence[Service]) -> Iterator[str]:
    """The services behind a real uvicorn on a free port, in a thread with its own event loop; yields the URL."""
    app = build_http_app(list(services))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="spendstream-otlp-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 90
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the services did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


def recorded_spans(resource: dict[str, Any], spans: Sequence[tuple[str, dict[str, Any], int]]) -> list[ReadableSpan]:
    """Spans as the SDK records them: (name, attributes, duration in ns) each, started now, one trace each."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create(resource))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("spendstream-tests")
    for name, attributes, duration in spans:
        start = time.time_ns()
        span = tracer.start_span(name, attributes=attributes, start_time=start)
        span.end(end_time=start + duration)
    provider.shutdown()
    return list(memory.get_finished_spans())
