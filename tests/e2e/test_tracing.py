"""One trace from the HTTP request to the ClickHouse insert, propagated through the Kafka record's headers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from spendstream.common.topics import USAGE_EVENTS, topic_name
from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.settings import IngestSettings
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.settings import RollupSettings
from tests.ingest.topics import read_all
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """The process-wide tracer provider (settable once), recording into memory."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    trace.set_tracer_provider(provider)
    yield _EXPORTER
    provider.shutdown()


async def _record_headers(iso: Isolation) -> list[dict[str, bytes]]:
    """The headers of every record on the usage topic, read up to its current end."""
    records = await read_all(iso.stack.kafka, topic_name(USAGE_EVENTS, iso.prefix))
    return [dict(record.headers) for record in records]


async def test_a_trace_id_follows_the_request_through_kafka_to_the_clickhouse_insert(
    iso: Isolation, spans: InMemorySpanExporter
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    ws = await create_workspace(iso)
    services = [create_ingest(iso.settings(IngestSettings)), create_rollup(iso.settings(RollupSettings))]
    async with serving(services) as client:
        headers = {**auth(ws["ingest"]), "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
        response = await client.post("/v1/events", json={"events": [usage_event()]}, headers=headers)
        assert response.status_code == 202

        async def stored() -> dict[str, Any] | None:
            r = await client.get("/v1/usage", headers=auth(ws["read"]))
            body: dict[str, Any] = r.json()
            return body if body["totals"]["requests"] == 1 else None

        await eventually(stored)

    in_trace = {s.name for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id}
    assert {"ingest.publish", "rollup.clickhouse_insert"} <= in_trace
    [record_headers] = await _record_headers(iso)
    assert record_headers["traceparent"].decode().split("-")[1] == trace_id
