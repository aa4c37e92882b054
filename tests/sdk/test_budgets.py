"""The SDK's side of hard budgets, without a server: what an estimate is made of, and where enforce=True asks."""

from __future__ import annotations

import json

import pytest

from spendstream_sdk import BudgetGate, Meter
from spendstream_sdk.budgets import estimate_of, gate_of_meter
from tests.sdk.instrument.recording import RecordingTracker


def test_an_estimate_is_the_body_size_in_tokens_and_the_requested_output_limit() -> None:
    body = {"model": "gpt-4o-mini", "max_tokens": 512, "messages": [{"role": "user", "content": "x" * 400}]}
    size = len(json.dumps(body, separators=(",", ":")))
    assert estimate_of("openai", body, 4096) == {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": size // 4,
        "max_output_tokens": 512,
    }
    responses = {"model": "gpt-4.1", "input": "hi", "max_output_tokens": 64}
    assert estimate_of("openai", responses, 4096)["max_output_tokens"] == 64
    assert estimate_of("anthropic", {"model": "claude-x"}, 4096)["max_output_tokens"] == 4096


def test_enforce_true_asks_the_meter_s_own_spendstream_with_its_key() -> None:
    meter = Meter(url="http://spendstream.example:8080/", api_key="ssk_ingest_abc")
    try:
        assert gate_of_meter(meter) == BudgetGate(url="http://spendstream.example:8080", api_key="ssk_ingest_abc")
    finally:
        meter.close(timeout=0.1)
    with pytest.raises(TypeError, match="BudgetGate"):
        gate_of_meter(RecordingTracker())
