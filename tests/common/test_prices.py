"""Costs from the shipped LiteLLM table, checked against values computed by hand from its per-token prices."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from spendstream.common.events import SealedEvent, sealed_events
from spendstream.common.prices import PriceTable, bundled

# (provider, model as sent, input, cached, output, reasoning, expected USD, the hand computation)
CASES = [
    (
        "openai",
        "gpt-4o-mini-2024-07-18",
        10_000,
        4_000,
        2_000,
        0,
        "0.0024",
        "6000*1.5e-7 + 4000*7.5e-8 (cache read) + 2000*6e-7",
    ),
    ("openai", "gpt-4o-2099-01-01", 1_000, 0, 500, 0, "0.0075", "unknown date -> gpt-4o: 1000*2.5e-6 + 500*1e-5"),
    (
        "openai",
        "o3-mini",
        2_000,
        1_000,
        3_000,
        2_500,
        "0.01485",
        "1000*1.1e-6 + 1000*5.5e-7 + 3000*4.4e-6 (no reasoning rate: reasoning billed as output)",
    ),
    (
        "anthropic",
        "anthropic/claude-sonnet-4-5-20250929",
        20_000,
        15_000,
        1_000,
        0,
        "0.0345",
        "5000*3e-6 + 15000*3e-7 + 1000*1.5e-5",
    ),
    ("anthropic", "claude-haiku-4-5", 3_000, 0, 300, 0, "0.0045", "3000*1e-6 + 300*5e-6"),
    (
        "bedrock",
        "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        4_000,
        2_000,
        800,
        0,
        "0.0186",
        "2000*3e-6 + 2000*3e-7 + 800*1.5e-5",
    ),
    (
        "bedrock",
        "bedrock/us-east-1/anthropic.claude-3-5-haiku-20241022-v1:0",
        10_000,
        0,
        1_000,
        0,
        "0.012",
        "10000*8e-7 + 1000*4e-6",
    ),
    (
        "bedrock",
        "meta.llama3-70b-instruct-v1:0",
        1_000,
        500,
        100,
        0,
        "0.003",
        "no cache-read rate: 1000*2.65e-6 + 100*3.5e-6",
    ),
    (
        "vertex_ai",
        "claude-sonnet-4-5@20250929",
        250_000,
        50_000,
        2_000,
        0,
        "1.275",
        "above 200k input: 200000*6e-6 + 50000*6e-7 + 2000*2.25e-5",
    ),
    ("google", "gemini-2.5-flash", 1_000, 0, 2_000, 1_500, "0.0053", "1000*3e-7 + 500*2.5e-6 + 1500*2.5e-6"),
    (
        "google",
        "projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro",
        100_000,
        20_000,
        5_000,
        0,
        "0.1525",
        "80000*1.25e-6 + 20000*1.25e-7 + 5000*1e-5",
    ),
    ("mistral", "mistral-large-latest", 5_000, 0, 1_000, 0, "0.004", "5000*5e-7 + 1000*1.5e-6"),
    ("azure", "gpt-4o-mini", 1_000, 0, 1_000, 0, "0.00075", "1000*1.5e-7 + 1000*6e-7"),
    (
        "deepseek",
        "deepseek-reasoner",
        10_000,
        8_000,
        4_000,
        3_000,
        "0.002464",
        "2000*2.8e-7 + 8000*2.8e-8 + 4000*4.2e-7",
    ),
    (
        "dashscope",
        "qwen-plus-2025-04-28",
        1_000,
        0,
        2_000,
        1_500,
        "0.007",
        "1000*4e-7 + 500*1.2e-6 + 1500*4e-6 (reasoning rate)",
    ),
]


def _event(provider: str, model: str, inp: int, cached: int, out: int, reasoning: int) -> SealedEvent:
    (event,) = sealed_events(
        [
            {
                "provider": provider,
                "model": model,
                "input_tokens": inp,
                "cached_input_tokens": cached or None,
                "output_tokens": out,
                "reasoning_tokens": reasoning or None,
                "latency_ms": 1,
                "timestamp": datetime.now(UTC).isoformat(),
            }
        ]
    )
    return event


@pytest.mark.parametrize(
    ("provider", "model", "inp", "cached", "out", "reasoning", "expected", "how"),
    CASES,
    ids=[f"{c[0]}:{c[1]}" for c in CASES],
)
def test_computed_cost_matches_the_hand_computed_value(
    provider: str, model: str, inp: int, cached: int, out: int, reasoning: int, expected: str, how: str
) -> None:
    price = bundled().lookup(provider, model)
    assert price is not None, f"{provider}/{model} did not resolve"
    assert price.cost(_event(provider, model, inp, cached, out, reasoning)) == Decimal(expected), how


def test_the_cases_cover_at_least_ten_models_and_four_providers() -> None:
    assert len({c[1] for c in CASES}) >= 10
    assert len({c[0] for c in CASES}) >= 4


@pytest.mark.parametrize(
    ("provider", "model", "key"),
    [
        ("openai", "openai/gpt-4o", "gpt-4o"),
        ("openai", "ft:gpt-4o-mini-2024-07-18:acme::abc123", "ft:gpt-4o-mini-2024-07-18"),
        ("anthropic", "claude-haiku-4-5-20251001", "claude-haiku-4-5-20251001"),
        ("azure", "gpt-4o-mini", "azure/gpt-4o-mini"),
        ("bedrock", "apac.anthropic.claude-3-5-haiku-20241022-v1:0", "anthropic.claude-3-5-haiku-20241022-v1:0"),
        ("vertex_ai", "claude-3-5-haiku@20241022", "vertex_ai/claude-3-5-haiku@20241022"),
        ("google", "gemini-2.5-pro-preview-05-06", "gemini/gemini-2.5-pro"),
        ("google", "gemini-2.5-flash", "gemini/gemini-2.5-flash"),
        ("xai", "grok-4.3", "xai/grok-4.3"),
    ],
)
def test_model_spellings_resolve_to_their_table_entry(provider: str, model: str, key: str) -> None:
    found = bundled().resolve(provider, model)
    assert found is not None and found[0] == key


def test_an_unknown_model_is_not_priced_at_all() -> None:
    assert bundled().lookup("acme", "acme-large-1") is None
    assert bundled().lookup("openai", "no-such-model-2024-01-01") is None


def test_a_table_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"acme-large-1": {"input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}')
    table = PriceTable.load(path)
    assert table.source == str(path) and len(table) == 1
    price = table.lookup("acme", "acme-large-1")
    assert price is not None and price.cost_of(1000, 1000) == Decimal("0.003")


def test_a_file_that_is_not_a_price_table_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2, 3]")
    with pytest.raises(ValueError, match="not a JSON object"):
        PriceTable.load(bad)
    bad.write_text('{"m": {"mode": "chat"}}')
    with pytest.raises(ValueError, match="prices no model"):
        PriceTable.load(bad)
