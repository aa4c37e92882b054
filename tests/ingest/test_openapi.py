"""schemathesis against ingest's /openapi.json, served by a real uvicorn on real Kafka and Redis: whatever it
generates from the document (valid or not), no request yields a 500, and answers match the document."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from spendstream.common.service import build_http_app
from spendstream.ingest.app import create_service
from spendstream.ingest.settings import IngestSettings
from tests.support import Stack, create_workspace, free_port, new_isolation, provision

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def live_ingest(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, Any]]]:
    iso = new_isolation(stack, Path(tmp_path_factory.mktemp("openapi")))
    asyncio.run(provision(iso))
    workspace = asyncio.run(create_workspace(iso))
    app = build_http_app([create_service(iso.settings(IngestSettings))])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="ingest-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "ingest did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", workspace
    server.should_exit = True
    thread.join(timeout=60)


@pytest.fixture(scope="module")
def api_schema(live_ingest: tuple[str, dict[str, Any]]) -> Any:
    return schemathesis.openapi.from_url(f"{live_ingest[0]}/openapi.json")


def test_openapi_documents_post_events_with_its_answers(live_ingest: tuple[str, dict[str, Any]]) -> None:
    import httpx

    doc = httpx.get(f"{live_ingest[0]}/openapi.json").json()
    post = doc["paths"]["/v1/events"]["post"]
    assert set(post["responses"]) >= {"202", "401", "413", "415", "422", "429", "503"}
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["events"] and body["properties"]["events"]["maxItems"] == 500
    event = body["properties"]["events"]["items"]
    assert event["additionalProperties"] is False
    assert set(event["required"]) == {"provider", "model", "input_tokens", "output_tokens", "latency_ms", "timestamp"}


# schemathesis' own strategies use `random` internally, which this hypothesis version warns about.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
def test_no_generated_request_yields_a_server_error(api_schema: Any, live_ingest: tuple[str, dict[str, Any]]) -> None:
    url, workspace = live_ingest
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert "POST /v1/events" in {f"{op.method.upper()} {op.path}" for op in operations}
    for operation in operations:
        key = workspace["admin"] if operation.path.startswith("/v1/admin") else workspace["ingest"]
        if operation.path.endswith("/cancel"):
            key = workspace["read"]  # a real cancel would turn every later event request into a 403

        _fuzz(operation, url, key)


def _fuzz(operation: Any, url: str, key: str) -> None:
    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        # Every other check runs; schema-valid data may still be refused by rules JSON Schema cannot state
        # (the time window, the privacy guard's content words and PII values), so that heuristic is off.
        case.call_and_validate(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, excluded_checks=[positive_data_acceptance]
        )

    check()
