"""One event end to end through every real part: HTTP → Kafka → ClickHouse → HTTP, with exact numbers."""

from __future__ import annotations

from typing import Any

import pytest

from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.settings import IngestSettings
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.settings import RollupSettings
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def test_posted_events_are_visible_in_usage_with_exact_totals(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    events = [
        usage_event(input_tokens=1200, output_tokens=300, cost_usd=0.125, tags={"feature": "chat"}),
        usage_event(input_tokens=800, output_tokens=100, cost_usd=0.0005, tags={"feature": "search"}),
        # No cost: priced from the LiteLLM table (gpt-4o-mini: 1.5e-7 in, 6e-7 out per token).
        usage_event(input_tokens=1000, output_tokens=1000, cost_usd=None, tags={"feature": "chat"}),
        # Prompt caching on the priority tier: 500 cache reads and 1000 cache writes (400 of them for an hour).
        usage_event(
            input_tokens=2000,
            cached_input_tokens=500,
            cache_creation_input_tokens=1000,
            cache_creation_1h_input_tokens=400,
            output_tokens=100,
            cost_usd=0.01,
            service_tier="priority",
            tags={"feature": "cache"},
        ),
    ]
    del events[2]["cost_usd"]
    services = [create_ingest(iso.settings(IngestSettings)), create_rollup(iso.settings(RollupSettings))]
    async with serving(services) as client:
        accepted = await client.post("/v1/events", json={"events": events}, headers=auth(ws["ingest"]))
        assert accepted.status_code == 202, accepted.text
        assert accepted.json() == {"accepted": 4, "duplicates": 0, "rejected": []}

        async def usage() -> dict[str, Any] | None:
            r = await client.get("/v1/usage", params={"group_by": "feature"}, headers=auth(ws["read"]))
            body: dict[str, Any] = r.json()
            return body if body["totals"]["requests"] == 4 else None

        body = await eventually(usage, timeout=10)
    assert body["totals"] == {
        "requests": 4,
        "input_tokens": 5000,
        "output_tokens": 1500,
        "cached_input_tokens": 500,
        "reasoning_tokens": 0,
        "cache_creation_input_tokens": 1000,
        "cache_creation_1h_input_tokens": 400,
        "cost_usd": "0.136250000",
        "latency_ms_sum": 1680,
    }
    by_feature = {row["feature"]: row["cost_usd"] for row in body["rows"]}
    assert by_feature == {"chat": "0.125750000", "search": "0.000500000", "cache": "0.010000000"}
    assert body["watermark"] is not None


async def test_restart_keeps_data_and_a_resent_batch_counts_nothing_twice(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    batch = {"events": [usage_event(cost_usd=1.5), usage_event(cost_usd=2.25)]}

    async def total_requests(client: Any) -> int:
        r = await client.get("/v1/usage", headers=auth(ws["read"]))
        return int(r.json()["totals"]["requests"])

    async with serving(
        [create_ingest(iso.settings(IngestSettings)), create_rollup(iso.settings(RollupSettings))]
    ) as client:
        assert (await client.post("/v1/events", json=batch, headers=auth(ws["ingest"]))).status_code == 202
        await eventually(lambda: _equals(total_requests(client), 2))

    async with serving(
        [create_ingest(iso.settings(IngestSettings)), create_rollup(iso.settings(RollupSettings))]
    ) as client:
        again = await client.post("/v1/events", json=batch, headers=auth(ws["ingest"]))
        assert again.json() == {"accepted": 0, "duplicates": 2, "rejected": []}
        r = await client.get("/v1/usage", headers=auth(ws["read"]))
        assert r.json()["totals"]["requests"] == 2
        assert r.json()["totals"]["cost_usd"] == "3.750000000"


async def _equals(value: Any, expected: int) -> bool:
    return bool(await value == expected)
