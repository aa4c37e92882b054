"""An outside oracle for spendstream's prices: LiteLLM's own `cost_per_token` over the same table.

For models of OpenAI, Anthropic, Google (Gemini and Vertex), Mistral, DeepSeek, Azure and Bedrock, with cache
reads, cache writes (5 minutes and 1 hour), reasoning, long-context tiers, batch and the flex and priority tiers,
the cost spendstream computes for an event equals LiteLLM's to 1e-9 relative, and the stored cost (rounded to
the nano-dollar) is LiteLLM's rounded.

LiteLLM reads the very file spendstream bundles: its cost map is replaced by that table before any call, and
each case's table entry is the same object on both sides. It is asked for the table key spendstream resolved,
so both price the same entry.

Where the two state a call differently, the test converts explicitly:
- spendstream's `input_tokens` includes the cache reads and the cache writes (the event contract), as LiteLLM's
  normalised `prompt_tokens` does with `prompt_tokens_details.cached_tokens` and `cache_creation_tokens`.
  (Anthropic's own API reports `input_tokens` without them; a producer adds them, as LiteLLM does.)
- spendstream's `cache_creation_1h_input_tokens` is LiteLLM's `ephemeral_1h_input_tokens`; the rest of the
  writes are its `ephemeral_5m_input_tokens`.
- `reasoning_tokens` is a part of `output_tokens` on both sides (`completion_tokens_details.reasoning_tokens`).
- `service_tier: batch` is LiteLLM's batch pricing (`call_type="retrieve_batch"`); `flex` and `priority` its
  `service_tier`; `default` and `scale` the standard rates (LiteLLM prices no such tier).
- One deliberate difference: where a batch call falls back to half the standard rates and the table has no
  cache-read rate, LiteLLM bills the cache reads at zero; spendstream bills them as input (half the input rate),
  never zero. For that case LiteLLM is asked about the same call without reported cache reads, which it bills as
  input: the price spendstream means.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from typing import Any

import pytest

from spendstream.common.events import SealedEvent, sealed_events
from spendstream.common.prices import BUNDLED, NANO, bundled

RELATIVE = Decimal("1e-9")
# LiteLLM's Mistral routing types warn on import under this pydantic; the suite turns warnings into errors.
pytestmark = pytest.mark.filterwarnings("ignore:.* using the `ReadOnly` qualifier")


@dataclass(frozen=True)
class Call:
    """One call as a usage event states it, and how LiteLLM names its provider."""

    provider: str  # the event's provider
    model: str  # the event's model
    litellm_provider: str
    input_tokens: int
    output_tokens: int
    cached: int = 0
    writes: int = 0
    writes_1h: int = 0
    reasoning: int = 0
    service_tier: str | None = None
    # LiteLLM bills the cache reads of this call at zero (see the module docstring): ask it without them.
    litellm_bills_reads_at_zero: bool = False

    @property
    def id(self) -> str:
        tier = f"@{self.service_tier}" if self.service_tier else ""
        return f"{self.provider}:{self.model}{tier}:{self.input_tokens}"


CALLS = [
    # OpenAI: cache reads; reasoning on the flex and priority tiers; a tier LiteLLM does not price; batch; the
    # long-context tier above 272k tokens, on the standard, flex, priority and batch rates.
    Call("openai", "gpt-4o-mini-2024-07-18", "openai", 10_000, 2_000, cached=4_000),
    Call("openai", "gpt-5", "openai", 50_000, 8_000, cached=30_000, reasoning=5_000, service_tier="flex"),
    Call("openai", "gpt-5", "openai", 50_000, 8_000, cached=30_000, reasoning=5_000, service_tier="priority"),
    Call("openai", "gpt-4o", "openai", 12_000, 900, cached=2_048, service_tier="default"),
    Call("openai", "gpt-4o", "openai", 12_000, 900, cached=2_048, service_tier="scale"),
    Call("openai", "o3", "openai", 20_000, 6_000, cached=10_000, reasoning=4_000, service_tier="batch"),
    Call("openai", "gpt-5.4", "openai", 300_000, 4_000, cached=100_000, reasoning=1_000),
    Call("openai", "gpt-5.4", "openai", 300_000, 4_000, cached=100_000, reasoning=1_000, service_tier="flex"),
    Call("openai", "gpt-5.4", "openai", 300_000, 4_000, cached=100_000, reasoning=1_000, service_tier="priority"),
    Call("openai", "gpt-5.4", "openai", 300_000, 4_000, cached=100_000, service_tier="batch"),
    Call("openai", "gpt-5.4", "openai", 100_000, 4_000, cached=50_000, service_tier="batch"),
    # Anthropic: cache reads and writes for 5 minutes and an hour; batch (no batch rate for hour-long writes).
    Call("anthropic", "claude-sonnet-4-5", "anthropic", 20_000, 1_000, cached=8_000, writes=6_000, writes_1h=2_000),
    Call("anthropic", "claude-haiku-4-5", "anthropic", 5_000, 300, writes=4_000, writes_1h=4_000),
    Call(
        "anthropic",
        "claude-sonnet-4-5-20250929",
        "anthropic",
        20_000,
        1_000,
        cached=8_000,
        writes=6_000,
        writes_1h=2_000,
        service_tier="batch",
    ),
    # Google: Gemini above 200k tokens with reasoning, on the standard, priority and batch rates; Vertex's
    # Claude above 200k with writes of both lifetimes (hour-long writes have a long-context rate of their own).
    Call("google", "gemini-2.5-pro", "gemini", 250_000, 6_000, cached=100_000, reasoning=4_000),
    Call(
        "google", "gemini-2.5-pro", "gemini", 250_000, 6_000, cached=100_000, reasoning=4_000, service_tier="priority"
    ),
    Call("google", "gemini-2.5-pro", "gemini", 250_000, 6_000, cached=100_000, reasoning=4_000, service_tier="batch"),
    Call("google", "gemini-2.5-pro", "gemini", 150_000, 6_000, cached=100_000, reasoning=4_000, service_tier="flex"),
    Call(
        "vertex_ai",
        "claude-sonnet-4-5@20250929",
        "vertex_ai",
        260_000,
        2_000,
        cached=100_000,
        writes=50_000,
        writes_1h=20_000,
    ),
    Call("vertex_ai", "claude-sonnet-4-5@20250929", "vertex_ai", 100_000, 2_000, cached=50_000, writes=10_000),
    # Mistral: cache reads; batch without batch rates (half the standard ones).
    Call("mistral", "mistral-large-latest", "mistral", 30_000, 3_000, cached=10_000),
    Call("mistral", "mistral-large-latest", "mistral", 30_000, 3_000, cached=10_000, service_tier="batch"),
    # DeepSeek: reads, writes at the table's explicit zero, reasoning.
    Call("deepseek", "deepseek-chat", "deepseek", 40_000, 2_000, cached=30_000, writes=5_000),
    Call("deepseek", "deepseek-reasoner", "deepseek", 40_000, 9_000, cached=30_000, reasoning=7_000),
    # Azure: priority with reasoning; batch.
    Call("azure", "gpt-5", "azure", 60_000, 9_000, cached=20_000, reasoning=6_000, service_tier="priority"),
    Call("azure", "gpt-4o", "azure", 60_000, 9_000, cached=20_000, service_tier="batch"),
    # Bedrock: a cross-region Claude above 200k with writes of both lifetimes; its batch, whose table has no
    # batch write rate (writes billed as batch input); a model with no cache-read rate in batch (the one
    # converted case).
    Call(
        "bedrock",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "bedrock",
        240_000,
        3_000,
        cached=40_000,
        writes=30_000,
        writes_1h=10_000,
    ),
    Call(
        "bedrock",
        "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        "bedrock",
        40_000,
        3_000,
        cached=10_000,
        writes=8_000,
        writes_1h=3_000,
        service_tier="batch",
    ),
    Call(
        "bedrock",
        "meta.llama3-70b-instruct-v1:0",
        "bedrock",
        9_000,
        700,
        cached=3_000,
        service_tier="batch",
        litellm_bills_reads_at_zero=True,
    ),
]


@pytest.fixture(scope="module")
def litellm_on_the_bundled_table() -> Any:
    """LiteLLM with its cost map replaced by spendstream's bundled table (no download)."""
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    import litellm
    from litellm.utils import _invalidate_model_cost_lowercase_map

    table = json.loads(resources.files("spendstream.common").joinpath("data", BUNDLED).read_text())
    litellm.model_cost.clear()
    litellm.model_cost.update(table)
    _invalidate_model_cost_lowercase_map()
    return litellm


def _event(call: Call) -> SealedEvent:
    (event,) = sealed_events(
        [
            {
                "provider": call.provider,
                "model": call.model,
                "input_tokens": call.input_tokens,
                "output_tokens": call.output_tokens,
                "cached_input_tokens": call.cached or None,
                "cache_creation_input_tokens": call.writes or None,
                "cache_creation_1h_input_tokens": call.writes_1h or None,
                "reasoning_tokens": call.reasoning or None,
                "service_tier": call.service_tier,
                "latency_ms": 1,
                "timestamp": datetime.now(UTC).isoformat(),
            }
        ]
    )
    return event


def _litellm_cost(litellm: Any, key: str, call: Call) -> Decimal:
    """LiteLLM's cost of the call, its usage stated as LiteLLM normalises it (see the module docstring)."""
    from litellm.types.utils import (
        CacheCreationTokenDetails,
        CompletionTokensDetailsWrapper,
        PromptTokensDetailsWrapper,
        Usage,
    )

    cached = 0 if call.litellm_bills_reads_at_zero else call.cached
    usage = Usage(
        prompt_tokens=call.input_tokens,
        completion_tokens=call.output_tokens,
        total_tokens=call.input_tokens + call.output_tokens,
        prompt_tokens_details=PromptTokensDetailsWrapper(
            cached_tokens=cached,
            cache_creation_tokens=call.writes,
            cache_creation_token_details=CacheCreationTokenDetails(
                ephemeral_5m_input_tokens=call.writes - call.writes_1h, ephemeral_1h_input_tokens=call.writes_1h
            )
            if call.writes
            else None,
        ),
        completion_tokens_details=CompletionTokensDetailsWrapper(reasoning_tokens=call.reasoning),
    )
    batch = call.service_tier == "batch"
    prompt, completion = litellm.cost_per_token(
        model=key,
        custom_llm_provider=call.litellm_provider,
        usage_object=usage,
        service_tier=None if batch else call.service_tier,
        call_type="retrieve_batch" if batch else "completion",
    )
    return Decimal(repr(prompt)) + Decimal(repr(completion))


@pytest.mark.parametrize("call", CALLS, ids=[c.id for c in CALLS])
def test_the_cost_of_an_event_is_litellms_over_the_same_table(litellm_on_the_bundled_table: Any, call: Call) -> None:
    litellm = litellm_on_the_bundled_table
    found = bundled().resolve(call.provider, call.model)
    assert found is not None, f"{call.provider}/{call.model} did not resolve"
    key, price = found
    assert litellm.model_cost[key] is not None and key in litellm.model_cost
    event = _event(call)
    expected = _litellm_cost(litellm, key, call)
    exact = price.exact_cost(
        event.input_tokens,
        event.output_tokens,
        event.cached_input_tokens or 0,
        event.reasoning_tokens or 0,
        cache_writes=event.cache_creation_input_tokens or 0,
        cache_writes_1h=event.cache_creation_1h_input_tokens or 0,
        service_tier=event.service_tier,
    )
    assert expected > 0
    assert abs(exact - expected) <= RELATIVE * expected, (exact, expected)
    # What is stored: the exact cost rounded to the nano-dollar, so LiteLLM's within half a nano-dollar (and
    # its float's own error).
    assert abs(price.cost(event) - expected) <= NANO / 2 + RELATIVE * expected


def test_the_oracle_covers_every_provider_and_kind_of_token_the_issue_names() -> None:
    providers = {c.litellm_provider for c in CALLS}
    assert {"openai", "anthropic", "gemini", "vertex_ai", "mistral", "deepseek", "azure", "bedrock"} <= providers
    assert {c.service_tier for c in CALLS} >= {None, "batch", "flex", "priority"}
    assert any(c.writes_1h and c.writes > c.writes_1h for c in CALLS)  # writes of both lifetimes
    assert any(c.reasoning for c in CALLS) and any(c.cached for c in CALLS)
    assert any(c.input_tokens > 200_000 for c in CALLS)  # long-context tiers
