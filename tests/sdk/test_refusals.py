"""track() refuses, at the call site, what the server would refuse: content fields and PII-looking tags (the
server's own guard), wrong types, parts above their totals. Nothing refused is queued, and a refusal names the
field and the rule, never the value."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import pytest

from spendstream_sdk import EventRefused, Meter
from tests.sdk.conftest import Workspace

GOOD: dict[str, Any] = {
    "provider": "openai",
    "model": "gpt-4o-mini",
    "input_tokens": 500,
    "output_tokens": 50,
    "latency_ms": 200,
}


@pytest.fixture
def meter(meters: list[Any]) -> Meter:
    # Nothing listens there: these tests never reach sending.
    made = Meter(url="http://127.0.0.1:9", api_key="k", flush_interval=60)
    meters.append(made)
    return made


@pytest.mark.parametrize(
    ("fields", "field", "code"),
    [
        ({"tags": {"prompt": "Summarise this contract"}}, "tags.prompt", "content_field"),
        ({"tags": {"user_message": "hello"}}, "tags.user_message", "content_field"),
        ({"tags": {"systemPrompt": "x"}}, "tags.systemPrompt", "content_field"),
        ({"tags": {"customer": "jane.roe@example.com"}}, "tags.customer", "pii_value"),
        ({"tags": {"card": "4111 1111 1111 1111"}}, "tags.card", "pii_value"),
        ({"tags": {"client": "10.1.2.3"}}, "tags.client", "pii_value"),
        ({"tags": {"phone": "+44 20 7946 0958"}}, "tags.phone", "pii_value"),
        ({"tags": {"Feature": "chat"}}, "tags.Feature", "invalid_tag_key"),
        ({"tags": {"feature": "x" * 121}}, "tags.feature", "too_long"),
        ({"tags": {"feature": 7}}, "tags.feature", "invalid_value"),
        ({"tags": {f"t{i}": "v" for i in range(25)}}, "tags", "too_many_tags"),
        ({"input_tokens": -1}, "input_tokens", "out_of_range"),
        ({"output_tokens": True}, "output_tokens", "invalid_value"),
        ({"latency_ms": 1.5}, "latency_ms", "invalid_value"),
        ({"latency_ms": 3_600_001}, "latency_ms", "out_of_range"),
        ({"provider": "OpenAI"}, "provider", "invalid_format"),
        ({"model": "gpt 4o"}, "model", "invalid_format"),
        ({"cached_input_tokens": 501}, "cached_input_tokens", "inconsistent_tokens"),
        ({"reasoning_tokens": 51}, "reasoning_tokens", "inconsistent_tokens"),
        (
            {"cached_input_tokens": 300, "cache_creation_input_tokens": 201},
            "cache_creation_input_tokens",
            "inconsistent_tokens",
        ),
        ({"cache_creation_1h_input_tokens": 10}, "cache_creation_1h_input_tokens", "inconsistent_tokens"),
        (
            {"cache_creation_input_tokens": 10, "cache_creation_1h_input_tokens": 11},
            "cache_creation_1h_input_tokens",
            "inconsistent_tokens",
        ),
        ({"service_tier": "Priority"}, "service_tier", "invalid_format"),
        ({"reservation_id": "res/1"}, "reservation_id", "invalid_format"),
        ({"cost_usd": 0.1234567890123}, "cost_usd", "invalid_value"),
        ({"cost_usd": -0.5}, "cost_usd", "out_of_range"),
        ({"cost_usd": float("nan")}, "cost_usd", "out_of_range"),
        ({"cost_usd": "0.5"}, "cost_usd", "invalid_value"),
        ({"timestamp": datetime(2026, 1, 1, 12)}, "timestamp", "invalid_timestamp"),
        ({"event_id": "has space"}, "event_id", "invalid_format"),
    ],
)
def test_track_refuses_at_once_naming_field_and_rule_never_the_value(
    meter: Meter, fields: dict[str, Any], field: str, code: str
) -> None:
    with pytest.raises(EventRefused) as refused:
        meter.track(**{**GOOD, **fields})
    assert isinstance(refused.value, ValueError)
    assert (refused.value.field, refused.value.code) == (field, code)
    for value in _strings(fields):
        assert value not in str(refused.value)
    assert meter.stats.tracked == 0  # nothing was queued


def _strings(fields: dict[str, Any]) -> list[str]:
    found = [v for v in fields.values() if isinstance(v, str)]
    for value in fields.values():
        if isinstance(value, dict):
            found += [v for v in value.values() if isinstance(v, str) and len(v) > 3]
    return found


def test_track_unmetered_refuses_a_pii_reason(meter: Meter) -> None:
    with pytest.raises(EventRefused) as refused:
        meter.track_unmetered(provider="openai", model="gpt-4o", latency_ms=10, reason="jane.roe@example.com")
    assert refused.value.field == "tags.usage_missing"
    assert meter.stats.unmetered == 0


def test_ids_are_uuidv7_unique_and_match_the_servers_pattern(meter: Meter) -> None:
    ids = [meter.track(**GOOD) for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{12}7[0-9a-f]{3}[89ab][0-9a-f]{15}", i) for i in ids)
    assert ids == sorted(ids) or len({i[:12] for i in ids}) > 1  # time-ordered within a millisecond's counter


def test_through_spendstream_only_the_clean_event_is_stored(workspace: Workspace, meters: list[Any]) -> None:
    meter = Meter(url=workspace.url, api_key=workspace.ingest_key, flush_interval=0.1)
    meters.append(meter)
    with pytest.raises(EventRefused):
        meter.track(**GOOD, tags={"prompt_text": "What is the capital of France?"})
    with pytest.raises(EventRefused):
        meter.track(**GOOD, tags={"customer_id": "jane.roe@example.com"})
    meter.track(**GOOD, tags={"customer_id": "cust-9"})
    unmetered = meter.track_unmetered(provider="openai", model="gpt-4o-mini", latency_ms=900, reason="stream_closed")
    assert unmetered
    assert meter.flush(timeout=30)
    body = workspace.usage_when(lambda b: b["totals"]["requests"] == 2)
    assert (body["totals"]["input_tokens"], body["totals"]["output_tokens"]) == (500, 50)
    stats = meter.stats
    assert (stats.tracked, stats.sent, stats.unmetered, stats.rejected) == (2, 2, 1, 0)
