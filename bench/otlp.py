"""OTLP intake: GenAI spans/s into ingest's `POST /v1/traces`, OTLP/HTTP protobuf (what the OpenTelemetry
exporters send by default) and OTLP JSON. `python -m bench.otlp [--smoke]` prints the figures.

ingest runs as its own process (`spendstream run ingest`) against the real broker and Redis; the load comes from
this process over keep-alive connections (bench.loadgen's client), `concurrency` requests in flight, each an
export of SPANS_PER_REQUEST chat spans with usage, every span a fresh trace and span id (so none is a duplicate).
Only exports answered 200 with no span refused count.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from bench.harness import Bench, ServiceProcess, free_port, start_stack
from bench.loadgen import Client

SPANS_PER_REQUEST = 100  # an OTel SDK BatchSpanProcessor exports up to 512; a busy service's batches are this size
RESOURCE = {"service.name": "bench", "deployment.environment.name": "prod"}
ATTRIBUTES: dict[str, str | int] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.cache_read.input_tokens": 1000,
    "spendstream.tag.feature": "chat",
    "server.address": "api.openai.com",
}


def _kv(key: str, value: str | int) -> KeyValue:
    return KeyValue(
        key=key, value=AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
    )


class Bodies:
    """Export bodies with fresh ids: one template, whose trace ids share a 12-byte marker that each body replaces
    with random bytes (equal length, so the encoding stays valid in protobuf, and in hex in JSON)."""

    def __init__(self, media_type: str, spans: int) -> None:
        self._marker = os.urandom(12)
        request = ExportTraceServiceRequest()
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend(_kv(k, v) for k, v in RESOURCE.items())
        scope = resource_spans.scope_spans.add()
        scope.scope.name = "opentelemetry.instrumentation.openai_v2"
        start = time.time_ns()
        for i in range(spans):
            span = scope.spans.add()
            span.trace_id = self._marker + i.to_bytes(4, "big")
            span.span_id = (i + 1).to_bytes(8, "big")
            span.name = "chat gpt-4o-mini"
            span.kind = 3  # CLIENT
            span.start_time_unix_nano = start
            span.end_time_unix_nano = start + 640_000_000
            span.attributes.extend(_kv(k, v) for k, v in ATTRIBUTES.items())
        self.json = media_type == "application/json"
        if self.json:
            body = json_format.MessageToDict(request)
            for s in body["resourceSpans"][0]["scopeSpans"][0]["spans"]:
                s["traceId"] = base64.b64decode(s["traceId"]).hex()
                s["spanId"] = base64.b64decode(s["spanId"]).hex()
            self._template = orjson.dumps(body)
            self._needle = self._marker.hex().encode()
        else:
            self._template = request.SerializeToString()
            self._needle = self._marker

    def next(self) -> bytes:
        fresh = os.urandom(12)
        return self._template.replace(self._needle, fresh.hex().encode() if self.json else fresh)


@dataclass(frozen=True)
class Figures:
    media_type: str
    spans_per_s: float
    exports: int
    statuses: dict[str, int]
    ingest_cpu_share: float


async def load(url: str, key: str, media_type: str, warmup: float, duration: float, concurrency: int) -> Figures:
    client = Client(url)
    head = client.head("/v1/traces", key).replace(b"application/json", media_type.encode())
    bodies = Bodies(media_type, SPANS_PER_REQUEST)
    began = time.perf_counter()
    start, end = began + warmup, began + warmup + duration
    accepted = exports = 0
    statuses: dict[str, int] = {}

    async def worker() -> None:
        nonlocal accepted, exports
        while time.perf_counter() < end:
            status, answer = await client.post(head, bodies.next())
            done = time.perf_counter()
            if not start <= done <= end:
                continue
            statuses[status] = statuses.get(status, 0) + 1
            exports += 1
            if status == "200" and _nothing_refused(media_type, answer):
                accepted += SPANS_PER_REQUEST

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        client.close()
    return Figures(media_type, accepted / duration, exports, statuses, 0.0)


def _nothing_refused(media_type: str, answer: bytes) -> bool:
    if media_type == "application/json":
        return bool(answer.strip() == b"{}")
    rejected: int = ExportTraceServiceResponse.FromString(answer).partial_success.rejected_spans
    return rejected == 0


async def measure(bench: Bench, concurrency: int | None = None) -> list[Figures]:
    warmup, duration, default_concurrency = (0.5, 2.0, 8) if bench.smoke else (3.0, 15.0, 16)
    concurrency = concurrency or default_concurrency
    ns = await bench.namespace("otlp", workspaces=1)
    svc = ServiceProcess("ingest", bench.env(ns.prefix, free_port()), bench.workdir / "logs" / "ingest.log")
    await svc.start()
    figures = []
    try:
        for media_type in ("application/x-protobuf", "application/json"):
            before, began = await svc.metric("process_cpu_seconds_total"), time.monotonic()
            run = await load(svc.url, ns.workspaces[0].ingest, media_type, warmup, duration, concurrency)
            cpu = (await svc.metric("process_cpu_seconds_total") - before) / (time.monotonic() - began)
            figures.append(dataclasses.replace(run, ingest_cpu_share=cpu))
    finally:
        await svc.stop()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.otlp", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, to check the bench runs")
    parser.add_argument("--concurrency", type=int, default=None, help="exports in flight (default 16; smoke 8)")
    args = parser.parse_args(argv)
    start_stack()
    bench = Bench(smoke=args.smoke, workdir=Path(tempfile.mkdtemp(prefix="spendstream-bench-otlp-")))

    async def run() -> list[Figures]:
        try:
            return await measure(bench, args.concurrency)
        finally:
            await bench.cleanup()

    for f in asyncio.run(run()):
        print(
            f"OTLP {f.media_type}: {f.spans_per_s:,.0f} GenAI spans/s accepted "
            f"({SPANS_PER_REQUEST} spans per export, {f.exports} exports, statuses {f.statuses}; "
            f"ingest used {f.ingest_cpu_share:.2f} of a core)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
