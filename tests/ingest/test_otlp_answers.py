"""What `POST /v1/traces` answers when Kafka does not acknowledge or the data key cannot be unwrapped: 503 with
Retry-After (the exporter retries), nothing stored; the retry is stored once. In memory, over ingest's fakes."""

from __future__ import annotations

import time
from typing import Any

import httpx
from fastapi import FastAPI
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from spendstream.ingest.otlp_api import build_otlp_router
from spendstream.ingest.settings import IngestSettings
from tests.ingest.fakes import Door, door, principal
from tests.ingest.test_otlp_spans import CHAT, export_request, span

PROTOBUF = {"content-type": "application/x-protobuf"}


async def _post(d: Door, workspace_id: str, body: bytes) -> httpx.Response:
    app = FastAPI()

    async def caller() -> Any:
        return principal(workspace_id)

    app.include_router(build_otlp_router(IngestSettings(), d.acceptor, d.workspaces, caller))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
        return await client.post("/v1/traces", content=body, headers=PROTOBUF)


def _export() -> bytes:
    now = time.time_ns()
    chat = span(CHAT, start_time_unix_nano=now, end_time_unix_nano=now + 1_000_000)
    data: bytes = export_request(chat).SerializeToString()
    return data


async def test_kafka_not_acknowledging_is_503_with_retry_after_and_the_retry_counts_once() -> None:
    d = door()
    export = _export()
    d.broker.failure = TimeoutError("no ack")
    refused = await _post(d, "ws_a", export)
    assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
    assert Status.FromString(refused.content).code == 14  # UNAVAILABLE: the exporters retry it
    assert d.broker.on("usage.events.v1") == []
    d.broker.failure = None
    taken = await _post(d, "ws_a", export)
    again = await _post(d, "ws_a", export)
    assert (taken.status_code, again.status_code) == (200, 200)
    assert ExportTraceServiceResponse.FromString(again.content) == ExportTraceServiceResponse()
    assert len(d.broker.on("usage.events.v1")) == 1  # the second export's span was a duplicate


async def test_a_data_key_this_kek_cannot_unwrap_is_503_and_nothing_is_stored() -> None:
    d = door()
    answer = await _post(d, "ws_k", _export())
    assert (answer.status_code, answer.headers["retry-after"]) == (503, "30")
    assert d.broker.on("usage.events.v1") == []
