"""The official OpenAI instrumentation (opentelemetry-instrumentation-openai-v2) driving the real `openai` client
against a local server that answers like OpenAI, its spans exported by the SDK's OTLP/HTTP exporter into a running
ingest: the calls' usage is read back exactly from /v1/usage. With content capture on, the chat spans carry the
prompt and are refused, counted in `partial_success`, and the prompt is in no topic or table.

The instrumented app runs as a program of its own (APP), as it would in production: the instrumentation reads its
environment (semantic-convention mode, content capture) once per process.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from spendstream.rollup.clickhouse import clickhouse_client
from tests.ingest.otlp_support import ingest_and_rollup, live
from tests.ingest.test_otlp_intake import usage_when
from tests.ingest.topics import read_all, topic_names
from tests.providers import ProviderConfig, ProviderServer, openai_chat_usage
from tests.support import Isolation, auth, create_workspace

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

APP = """
import sys

import openai
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

base_url, prompt, spans_file = sys.argv[1:4]
provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))  # endpoint and key from the environment
memory = InMemorySpanExporter()
provider.add_span_processor(SimpleSpanProcessor(memory))
OpenAIInstrumentor().instrument(tracer_provider=provider)

client = openai.OpenAI(base_url=base_url, api_key="test", max_retries=0)
messages = [{"role": "user", "content": prompt}]
client.chat.completions.create(model="gpt-4o-mini", messages=messages)
stream = client.chat.completions.create(
    model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}
)
for _ in stream:
    pass
client.embeddings.create(model="text-embedding-3-small", input=prompt)
provider.shutdown()
with open(spans_file, "wb") as out:
    out.write(encode_spans(memory.get_finished_spans()).SerializeToString())
"""


async def run_app(url: str, key: str, provider: ProviderServer, tmp_path: Path, prompt: str, **env: str) -> bytes:
    """Run APP against the local provider, exporting to ingest; returns its spans as one OTLP protobuf export."""
    script, spans = tmp_path / "app.py", tmp_path / "spans.bin"
    script.write_text(APP)
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{url}/v1/traces",
        "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{key}",
        **env,
    }
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(script), provider.openai_url, prompt, str(spans)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert prompt not in run.stderr  # the exporter was never told anything that quotes it
    return spans.read_bytes()


def usage_config() -> ProviderConfig:
    return ProviderConfig(
        chat_usage=openai_chat_usage(prompt=1200, completion=300, cached=1000, reasoning=120),
        embeddings_usage={"prompt_tokens": 42, "total_tokens": 42},
        response_model="gpt-4o-mini-2024-07-18",
    )


async def test_the_openai_instrumentations_spans_are_metered_exactly(iso: Isolation, tmp_path: Path) -> None:
    ws = await create_workspace(iso)
    with ProviderServer(usage_config()) as provider, live(ingest_and_rollup(iso)) as url:
        await run_app(url, ws["ingest"], provider, tmp_path, "What is my order status?")
        body = await usage_when(url, ws["read"], 3, group_by="provider,model,service_tier")
    # The instrumentation reports chat usage as input and output tokens (not the cached part) in this mode, and
    # the tier OpenAI answered with on the chat calls.
    rows = {
        (r["provider"], r["model"], r["service_tier"]): (r["requests"], r["input_tokens"], r["output_tokens"])
        for r in body["rows"]
    }
    assert rows == {
        ("openai", "gpt-4o-mini-2024-07-18", "default"): (2, 1200 + 1200, 300 + 300),
        ("openai", "gpt-4o-mini-2024-07-18", ""): (1, 42, 0),
    }


@pytest.mark.parametrize(
    "mode",
    [
        {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_ONLY"},
        {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "SPAN_AND_EVENT"},
    ],
)
async def test_with_content_capture_on_the_chat_spans_are_refused_and_the_prompt_is_nowhere(
    iso: Isolation, tmp_path: Path, mode: dict[str, str]
) -> None:
    prompt = f"my-secret-prompt-{uuid.uuid4().hex}"
    ws = await create_workspace(iso)
    env = {"OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental", **mode}
    with ProviderServer(usage_config()) as provider, live(ingest_and_rollup(iso)) as url:
        exported = await run_app(url, ws["ingest"], provider, tmp_path, prompt, **env)
        assert prompt.encode() in exported  # the app really sent its prompt
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            headers = auth(ws["ingest"]) | {"Content-Type": "application/x-protobuf"}
            again = await http.post("/v1/traces", content=exported, headers=headers)
        body = await usage_when(url, ws["read"], 1, group_by="model")
        await asyncio.sleep(1.0)
        body = await usage_when(url, ws["read"], 1, group_by="model")
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            dump = (await http.get("/v1/export", headers=auth(ws["read"]))).text

    spans = ExportTraceServiceRequest.FromString(exported).resource_spans[0].scope_spans
    chat = [s for scope in spans for s in scope.spans if s.name.startswith("chat")]
    assert len(chat) == 2
    partial = ExportTraceServiceResponse.FromString(again.content).partial_success
    assert partial.rejected_spans == 2
    assert "gen_ai.input.messages" in partial.error_message and prompt not in partial.error_message
    assert "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT" in partial.error_message
    # Only the embeddings call, which carries no content, is metered.
    totals: dict[str, Any] = body["totals"]
    assert (totals["requests"], totals["input_tokens"], totals["output_tokens"]) == (1, 42, 0)
    assert prompt not in dump
    for topic in await topic_names(iso.stack.kafka, iso.prefix):
        for record in await read_all(iso.stack.kafka, topic):
            assert prompt.encode() not in (record.value or b""), topic
    ch = clickhouse_client(iso.stack.clickhouse)
    assert prompt not in repr(ch.query(f"SELECT * FROM {iso.database}.usage_events").result_rows)
