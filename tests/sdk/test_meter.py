"""`Meter` through a real spendstream: what is tracked is stored, exactly, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from spendstream_sdk import Meter
from tests.sdk.conftest import Workspace


def test_tracked_events_are_read_back_exactly_from_usage(workspace: Workspace, meters: list[Any]) -> None:
    meter = Meter(url=workspace.url, api_key=workspace.ingest_key)
    meters.append(meter)
    ids = [
        meter.track(
            provider="openai",
            model="gpt-4o-mini",
            input_tokens=1200,
            output_tokens=300,
            latency_ms=640,
            cached_input_tokens=200,
            reasoning_tokens=100,
            cost_usd=0.125,
            tags={"feature": "chat"},
        ),
        meter.track(
            provider="anthropic",
            model="claude-sonnet-4-5",
            input_tokens=800,
            output_tokens=100,
            latency_ms=360,
            cached_input_tokens=100,
            cache_creation_input_tokens=300,
            cache_creation_1h_input_tokens=120,
            service_tier="priority",
            cost_usd=0.0005,
            timestamp=datetime.now(UTC) - timedelta(minutes=1),
            tags={"feature": "search"},
        ),
    ]
    assert len(set(ids)) == 2

    assert meter.flush(timeout=30)
    body = workspace.usage_when(lambda b: b["totals"]["requests"] == 2, group_by="feature")

    expected = {
        "requests": 2,
        "input_tokens": 2000,
        "output_tokens": 400,
        "cached_input_tokens": 300,
        "cache_creation_input_tokens": 300,
        "cache_creation_1h_input_tokens": 120,
        "reasoning_tokens": 100,
        "cost_usd": "0.125500000",
        "latency_ms_sum": 1000,
    }
    assert body["totals"] == expected
    assert {row["feature"]: row["cost_usd"] for row in body["rows"]} == {"chat": "0.125000000", "search": "0.000500000"}
    stats = meter.stats
    assert (stats.tracked, stats.sent, stats.queued, stats.dropped, stats.rejected) == (2, 2, 0, 0, 0)
