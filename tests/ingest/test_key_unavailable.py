"""A workspace whose data key another KEK wrapped (tests/ingest/fakes.py: `ws_k`): HTTP answers that workspace a
JSON 503 `key_unavailable` and nothing is accepted or counted, other workspaces are unaffected; the raw intake
waits and gives the record back (redelivered, never rejected), counting it in a metric, logging it at a bounded
rate."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from spendstream.common.tenants import KeyUnavailable
from spendstream.ingest.api import build_router
from spendstream.ingest.settings import IngestSettings
from tests.ingest.fakes import Door, Record, door, principal
from tests.support import usage_event


def _unavailable(consumer: str) -> float:
    return REGISTRY.get_sample_value("spendstream_key_unavailable_total", {"consumer": consumer}) or 0.0


async def _post(d: Door, workspace_id: str) -> httpx.Response:
    app = FastAPI()

    async def caller() -> Any:
        return principal(workspace_id)

    app.include_router(build_router(IngestSettings(), d.acceptor, d.workspaces, caller))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
        return await client.post("/v1/events", json={"events": [usage_event()]})


async def test_http_answers_the_workspace_a_json_503_key_unavailable_and_other_workspaces_pass() -> None:
    d = door()
    before = _unavailable("ingest_http")

    refused = await _post(d, "ws_k")
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/json"
    assert refused.json()["error"] == "key_unavailable" and refused.headers["Retry-After"]
    assert d.broker.on("usage.events.v1") == []
    assert d.limiter.used.get("ws_k", 0) == 0  # nothing accepted, so nothing counted against the quota
    assert _unavailable("ingest_http") == before + 1

    accepted = await _post(d, "ws_a")
    assert accepted.status_code == 202 and accepted.json()["accepted"] == 1


async def test_the_raw_intake_gives_the_record_back_without_rejecting_it_and_logs_at_a_bounded_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    d = door()
    before = _unavailable("ingest_raw")
    record = Record(orjson.dumps({"events": [usage_event()]}), [("x-api-key", b"key-k")], 0)
    caplog.set_level(logging.INFO)

    for _ in range(50):  # as Kafka would redeliver it while the KEK is wrong
        with pytest.raises(KeyUnavailable):
            await d.intake.handle(record)

    assert d.broker.on("ingest.rejected.v1") == []  # not poison: readable once the right KEK is configured
    assert d.broker.on("usage.events.v1") == []
    assert _unavailable("ingest_raw") == before + 50
    lines = [r for r in caplog.records if "cannot be unwrapped" in r.getMessage()]
    assert len(lines) == 1 and getattr(lines[0], "workspace_id", None) == "ws_k"

    # Another workspace's record is forwarded meanwhile.
    await d.intake.handle(Record(orjson.dumps({"events": [usage_event()]}), [("x-api-key", b"key-a")], 1))
    assert len(d.broker.on("usage.events.v1")) == 1


def test_key_unavailable_is_documented_in_the_openapi_schema() -> None:
    d = door()
    app = FastAPI()

    async def caller() -> Any:
        return principal("ws_a")

    app.include_router(build_router(IngestSettings(), d.acceptor, d.workspaces, caller))
    answer = app.openapi()["paths"]["/v1/events"]["post"]["responses"]["503"]
    assert "key_unavailable" in answer["description"]
    assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
