"""OTLP intake end to end: the real OpenTelemetry SDK and its OTLP/HTTP exporter export GenAI spans into a
running ingest (real uvicorn, Kafka, Redis) and rollup; the tokens come back exactly from /v1/usage, a re-export
counts once, and a span carrying content is refused, counted, and found in no log, topic or table."""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import logging
import time
import uuid
from typing import Any

import httpx
import orjson
import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

from spendstream.rollup.clickhouse import clickhouse_client
from tests.ingest.otlp_support import ingest_and_rollup, live, recorded_spans
from tests.ingest.topics import read_all, topic_names
from tests.support import Isolation, auth, create_workspace, eventually

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

RESOURCE = {"service.name": "checkout", "deployment.environment.name": "prod"}
CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.cache_read.input_tokens": 1000,
    "openai.response.service_tier": "priority",
    "spendstream.tag.feature": "chat",
}
OLDER_ANTHROPIC = {  # older attribute names (semantic conventions v1.36 and earlier, and other instrumentations)
    "gen_ai.system": "anthropic",
    "gen_ai.request.model": "claude-sonnet-4-5",
    "gen_ai.usage.prompt_tokens": 5000,
    "gen_ai.usage.completion_tokens": 700,
    "gen_ai.usage.cache_read_input_tokens": 3000,
    "gen_ai.usage.cache_creation_input_tokens": 1000,
    "gen_ai.usage.reasoning.output_tokens": 400,
    "spendstream.tag.feature": "search",
}
HTTP = {"http.request.method": "POST", "url.path": "/checkout"}  # not GenAI: ignored


def exporter(url: str, key: str, **options: Any) -> OTLPSpanExporter:
    return OTLPSpanExporter(endpoint=f"{url}/v1/traces", headers={"Authorization": f"Bearer {key}"}, **options)


async def usage_when(url: str, key: str, requests: int, **params: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:

        async def read() -> dict[str, Any] | None:
            body: dict[str, Any] = (await http.get("/v1/usage", params=params, headers=auth(key))).json()
            return body if body["totals"]["requests"] >= requests else None

        return await eventually(read, timeout=60)


def otlp_json(spans: list[ReadableSpan]) -> bytes:
    """The spans in the OTLP JSON mapping: lowerCamelCase keys, int64 as strings, hex trace and span ids."""
    body = json_format.MessageToDict(encode_spans(spans))
    for resource_spans in body["resourceSpans"]:
        for scope_spans in resource_spans["scopeSpans"]:
            for span in scope_spans["spans"]:
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return orjson.dumps(body)


async def test_spans_from_the_sdk_exporter_are_read_back_exactly_and_a_re_export_counts_once(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    spans = recorded_spans(
        RESOURCE,
        [("chat gpt-4o-mini", CHAT, 640_000_000), ("chat claude", OLDER_ANTHROPIC, 2_500_400_000), ("POST", HTTP, 1)],
    )
    with live(ingest_and_rollup(iso)) as url:
        assert await asyncio.to_thread(exporter(url, ws["ingest"]).export, spans) == SpanExportResult.SUCCESS
        # The same spans again, gzipped this time (a retried export): duplicates, counted once.
        gzipped = exporter(url, ws["ingest"], compression=Compression.Gzip)
        assert await asyncio.to_thread(gzipped.export, spans) == SpanExportResult.SUCCESS
        body = await usage_when(url, ws["read"], 2, group_by="provider,model,feature,service_tier")
        await asyncio.sleep(1.0)  # time for a second copy to arrive, were there one
        body = await usage_when(url, ws["read"], 2, group_by="provider,model,feature,service_tier")
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            exported = (await http.get("/v1/export", headers=auth(ws["read"]))).json()
    assert body["totals"] | {"cost_usd": None} == {
        "requests": 2,
        "input_tokens": 6200,
        "output_tokens": 1000,
        "cached_input_tokens": 1000 + 3000,
        "cache_creation_input_tokens": 1000,
        "cache_creation_1h_input_tokens": 0,
        "reasoning_tokens": 400,
        "cost_usd": None,
        "latency_ms_sum": 640 + 2500,
    }
    rows = {(r["provider"], r["model"], r["feature"], r["service_tier"]): r["input_tokens"] for r in body["rows"]}
    assert rows == {
        ("openai", "gpt-4o-mini-2024-07-18", "chat", "priority"): 1200,
        ("anthropic", "claude-sonnet-4-5", "search", ""): 5000,
    }
    events = {e["event_id"]: e for e in exported["events"]}
    chat = next(s for s in spans if s.name == "chat gpt-4o-mini")
    assert chat.context is not None
    event_id = f"otlp-{chat.context.trace_id:032x}-{chat.context.span_id:016x}"
    assert events[event_id]["environment"] == "prod"
    assert events[event_id]["tags"] == {
        "feature": "chat",
        "environment": "prod",
        "service": "checkout",
        "operation": "chat",
    }


async def test_otlp_json_posted_by_hand_is_taken_like_protobuf(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    spans = recorded_spans(RESOURCE, [("chat", CHAT, 1_000_000_000)])
    with live(ingest_and_rollup(iso)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            headers = auth(ws["ingest"]) | {"Content-Type": "application/json", "Content-Encoding": "gzip"}
            first = await http.post("/v1/traces", content=gzip.compress(otlp_json(spans)), headers=headers)
            assert (first.status_code, first.headers["content-type"], first.json()) == (200, "application/json", {})
            again = await http.post(
                "/v1/traces",
                content=otlp_json(spans),
                headers=auth(ws["ingest"]) | {"Content-Type": "application/json"},
            )
            assert (again.status_code, again.json()) == (200, {})
        body = await usage_when(url, ws["read"], 1)
    assert (body["totals"]["requests"], body["totals"]["input_tokens"], body["totals"]["output_tokens"]) == (
        1,
        1200,
        300,
    )


async def test_a_tag_the_guard_refuses_refuses_its_span_and_only_that_one(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    email = f"jane.{uuid.uuid4().hex[:8]}@example.com"
    pii = {**CHAT, "spendstream.tag.user": email}
    spans = recorded_spans(RESOURCE, [("chat", CHAT, 1_000_000), ("chat", pii, 1_000_000), ("chat", CHAT, 1_000_000)])
    with live(ingest_and_rollup(iso)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            headers = auth(ws["ingest"]) | {"Content-Type": "application/x-protobuf"}
            answer = await http.post("/v1/traces", content=encode_spans(spans).SerializeToString(), headers=headers)
        body = await usage_when(url, ws["read"], 2)
    partial = ExportTraceServiceResponse.FromString(answer.content).partial_success
    assert (answer.status_code, partial.rejected_spans) == (200, 1)
    assert "tags.user" in partial.error_message and email not in partial.error_message
    assert "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT" not in partial.error_message  # not about content
    assert body["totals"]["requests"] == 2


async def test_a_span_with_content_is_refused_counted_and_its_content_is_nowhere(
    iso: Isolation, json_log: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = f"s3cr3t-prompt-{uuid.uuid4().hex}"
    ws = await create_workspace(iso)
    leaky = {**CHAT, "gen_ai.input.messages": orjson.dumps([{"role": "user", "parts": [{"content": secret}]}]).decode()}
    spans = recorded_spans(RESOURCE, [("chat", CHAT, 500_000_000), ("chat leaky", leaky, 500_000_000)])
    request = encode_spans(spans).SerializeToString()
    with live(ingest_and_rollup(iso)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            headers = auth(ws["ingest"]) | {"Content-Type": "application/x-protobuf"}
            answer = await http.post("/v1/traces", content=request, headers=headers)
            as_json = await http.post(
                "/v1/traces",
                content=otlp_json(spans),
                headers=auth(ws["ingest"]) | {"Content-Type": "application/json"},
            )
            metrics = (await http.get("/metrics")).text
        # The SDK's exporter is told 200: a refusal is not retryable.
        assert await asyncio.to_thread(exporter(url, ws["ingest"]).export, spans) == SpanExportResult.SUCCESS
        await usage_when(url, ws["read"], 1)
        await asyncio.sleep(1.0)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            usage = (await http.get("/v1/usage", headers=auth(ws["read"]))).json()
            exported = (await http.get("/v1/export", headers=auth(ws["read"]))).text

    assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-protobuf"
    partial = ExportTraceServiceResponse.FromString(answer.content).partial_success
    assert partial.rejected_spans == 1
    assert "gen_ai.input.messages" in partial.error_message
    assert "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT" in partial.error_message
    assert as_json.json()["partialSuccess"]["rejectedSpans"] == "1"
    assert usage["totals"]["requests"] == 1  # the clean span only, once

    assert secret not in partial.error_message and secret not in as_json.text
    assert secret not in exported
    assert secret not in metrics
    assert 'spendstream_ingest_otlp_spans_total{outcome="refused"}' in metrics
    assert 'spendstream_ingest_events_refused_total{code="content_refused"}' in metrics
    assert "otlp spans refused" in json_log.getvalue()
    assert secret not in json_log.getvalue() and secret not in caplog.text
    assert all(secret not in repr(r.__dict__) for r in caplog.records)

    needle = secret.encode()
    searched = 0
    for topic in await topic_names(iso.stack.kafka, iso.prefix):
        for record in await read_all(iso.stack.kafka, topic):
            searched += 1
            assert needle not in (record.value or b""), topic
            assert needle not in (record.key or b""), topic
            assert all(needle not in (v or b"") for _, v in record.headers), topic
    assert searched > 0
    ch = clickhouse_client(iso.stack.clickhouse)
    tables = [
        row[0]
        for row in ch.query(
            "SELECT name FROM system.tables WHERE database = {db:String}", parameters={"db": iso.database}
        ).result_rows
    ]
    assert "usage_events" in tables
    for table in tables:
        assert secret not in repr(ch.query(f"SELECT * FROM {iso.database}.`{table}`").result_rows), table


async def test_malformed_bodies_are_400_and_keys_are_checked(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    with live(ingest_and_rollup(iso)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            proto = {"Content-Type": "application/x-protobuf"}
            garbage = await http.post("/v1/traces", content=b"\xff\xff\xff", headers=auth(ws["ingest"]) | proto)
            assert garbage.status_code == 400 and garbage.headers["content-type"] == "application/x-protobuf"
            assert Status.FromString(garbage.content).code == 3  # INVALID_ARGUMENT
            bad_json = await http.post(
                "/v1/traces", content=b"{", headers=auth(ws["ingest"]) | {"Content-Type": "application/json"}
            )
            assert (bad_json.status_code, bad_json.json()["error"]) == (400, "invalid_json")
            bomb = gzip.compress(b"\x00" * (6 * 1024 * 1024))
            inflated = await http.post(
                "/v1/traces", content=bomb, headers=auth(ws["ingest"]) | proto | {"Content-Encoding": "gzip"}
            )
            assert inflated.status_code == 413
            text = await http.post(
                "/v1/traces", content=b"x", headers=auth(ws["ingest"]) | {"Content-Type": "text/plain"}
            )
            assert (text.status_code, text.json()["error"]) == (415, "unsupported_media_type")
            nobody = await http.post("/v1/traces", content=b"", headers=proto)
            assert nobody.status_code == 401
            reader = await http.post("/v1/traces", content=b"", headers=auth(ws["read"]) | proto)
            assert reader.status_code == 403


async def test_over_the_rate_limit_the_exporter_is_told_to_retry_later(iso: Isolation) -> None:
    from spendstream.ingest.app import create_service as create_ingest
    from spendstream.ingest.settings import IngestSettings

    ws = await create_workspace(iso)
    slow = iso.settings(IngestSettings, rate_limit_events_per_second=0.01, rate_limit_burst_events=500)
    many = recorded_spans(RESOURCE, [("chat", CHAT, 1_000_000)] * 501)
    with live([create_ingest(slow)]) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            headers = auth(ws["ingest"]) | {"Content-Type": "application/x-protobuf"}
            started = time.monotonic()
            limited = await http.post("/v1/traces", content=encode_spans(many).SerializeToString(), headers=headers)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert Status.FromString(limited.content).code == 8  # RESOURCE_EXHAUSTED
    assert time.monotonic() - started < 60
