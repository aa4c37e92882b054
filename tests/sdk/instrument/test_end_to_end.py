"""Instrumented clients through a real spendstream: the real openai and anthropic packages call the local
provider, a real Meter sends to a running ingest, and rollup's /v1/usage reads the tokens back exactly —
streamed calls included; and the README's example, run as written. (One module: one spendstream started.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from spendstream_sdk import AsyncMeter, Meter
from spendstream_sdk.instrument import instrument, instrument_stats
from tests.providers import ProviderServer
from tests.sdk.conftest import Workspace

pytestmark = pytest.mark.integration

MESSAGES: list[Any] = [{"role": "user", "content": "Plan Alice Martin's trip to Lisbon"}]
TOKEN_FIELDS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
)


def totals(body: dict[str, Any], fields: tuple[str, ...] = TOKEN_FIELDS) -> dict[str, Any]:
    return {key: body["totals"][key] for key in fields}


def test_openai_calls_streamed_or_not_are_read_back_exactly_from_usage(
    provider: ProviderServer, workspace: Workspace, meters: list[Any]
) -> None:
    meter = Meter(url=workspace.url, api_key=workspace.ingest_key)
    meters.append(meter)
    with openai.OpenAI(base_url=provider.openai_url, api_key="sk-test", max_retries=0) as original:
        client = instrument(original, meter, tags={"feature": "trips"})
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        chunks = list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
        list(client.responses.create(model="gpt-4.1", input="Plan a trip", stream=True))
        client.embeddings.create(model="text-embedding-3-small", input="Lisbon")

    assert all(chunk.choices for chunk in chunks)
    assert meter.flush(timeout=30)
    body = workspace.usage_when(lambda b: b["totals"]["requests"] == 4, group_by="model")

    # chat 1200/300 (1000 cached, 120 reasoning) twice, Responses 2000/500 (1500, 200), embeddings 42/0.
    assert totals(body) == {
        "requests": 4,
        "input_tokens": 2 * 1200 + 2000 + 42,
        "output_tokens": 2 * 300 + 500,
        "cached_input_tokens": 2 * 1000 + 1500,
        "reasoning_tokens": 2 * 120 + 200,
        "cache_creation_input_tokens": 0,
        "cache_creation_1h_input_tokens": 0,
    }
    assert {row["model"]: row["requests"] for row in body["rows"]} == {
        "gpt-4o-mini": 2,
        "gpt-4.1": 1,
        "text-embedding-3-small": 1,
    }
    # The service tier the answers named (embeddings name none).
    assert workspace.usage(service_tier="default")["totals"]["requests"] == 3


async def test_async_anthropic_streams_are_read_back_with_the_cache_counted_into_the_input(
    provider: ProviderServer, workspace: Workspace
) -> None:
    meter = AsyncMeter(url=workspace.url, api_key=workspace.ingest_key)
    async with anthropic.AsyncAnthropic(base_url=provider.anthropic_url, api_key="k", max_retries=0) as original:
        client = instrument(original, meter, tags={"feature": "trips"})
        await client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES)
        stream = await client.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES, stream=True)
        async for _ in stream:
            pass
        async with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES) as helper:
            await helper.until_done()
    assert await meter.aclose(timeout=30)

    body = workspace.usage_when(lambda b: b["totals"]["requests"] == 3)

    # 100 uncached + 4000 cache read + 1000 cache writes (400 of them for 1 hour), 250 out, for each of the three.
    assert totals(body) == {
        "requests": 3,
        "input_tokens": 3 * 5100,
        "output_tokens": 3 * 250,
        "cached_input_tokens": 3 * 4000,
        "reasoning_tokens": 0,
        "cache_creation_input_tokens": 3 * 1000,
        "cache_creation_1h_input_tokens": 3 * 400,
    }
    assert workspace.usage(service_tier="standard")["totals"]["requests"] == 3


def test_a_pii_tag_returns_the_answer_while_the_event_is_dropped_and_counted(
    provider: ProviderServer, workspace: Workspace, meters: list[Any]
) -> None:
    meter = Meter(url=workspace.url, api_key=workspace.ingest_key)
    meters.append(meter)
    with openai.OpenAI(base_url=provider.openai_url, api_key="sk-test", max_retries=0) as original:
        leaky = instrument(original, meter, tags={"customer": "alice.martin@example.com"})
        answer = leaky.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        instrument(original, meter).embeddings.create(model="text-embedding-3-small", input="Lisbon")

    assert answer.choices[0].message.content == "Hello from the local provider."
    assert instrument_stats(meter).dropped == 1
    assert meter.flush(timeout=30)
    body = workspace.usage_when(lambda b: b["totals"]["requests"] >= 1)
    assert totals(body, ("requests", "input_tokens")) == {"requests": 1, "input_tokens": 42}
    assert meter.stats.tracked == 1


def test_a_stream_closed_early_is_stored_as_an_unmetered_call_not_as_nothing(
    provider: ProviderServer, workspace: Workspace, meters: list[Any]
) -> None:
    meter = Meter(url=workspace.url, api_key=workspace.ingest_key)
    meters.append(meter)
    with openai.OpenAI(base_url=provider.openai_url, api_key="sk-test", max_retries=0) as original:
        client = instrument(original, meter)
        with client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True) as stream:
            next(iter(stream))

    assert meter.flush(timeout=30)
    body = workspace.usage_when(lambda b: b["totals"]["requests"] == 1)
    assert totals(body, ("requests", "input_tokens", "output_tokens")) == {
        "requests": 1,
        "input_tokens": 0,
        "output_tokens": 0,
    }
    assert meter.stats.unmetered == 1


README = Path(__file__).resolve().parents[3] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    section = text.split("### instrument(): OpenAI and Anthropic", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the section has no python example"
    return match.group(1)


def test_the_readme_example_runs_and_its_calls_are_read_back_from_usage(
    provider: ProviderServer, workspace: Workspace, tmp_path: Path
) -> None:
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    env = os.environ | {
        "SPENDSTREAM_URL": workspace.url,
        "SPENDSTREAM_API_KEY": workspace.ingest_key,
        "OPENAI_BASE_URL": provider.openai_url,
        "OPENAI_API_KEY": "sk-test",
        "ANTHROPIC_BASE_URL": provider.anthropic_url,
        "ANTHROPIC_API_KEY": "sk-ant-test",
    }

    run = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)

    assert run.returncode == 0, run.stderr
    assert run.stdout == "Hello from the local provider." * 2
    body: dict[str, Any] = workspace.usage_when(lambda b: b["totals"]["requests"] == 3, group_by="provider")
    # Two chat calls (1200 in, 1000 of them cached; 300 out) and one Anthropic stream (5100 in, 4000 cached; 250 out).
    assert {k: body["totals"][k] for k in ("input_tokens", "cached_input_tokens", "output_tokens")} == {
        "input_tokens": 2 * 1200 + 5100,
        "cached_input_tokens": 2 * 1000 + 4000,
        "output_tokens": 2 * 300 + 250,
    }
    assert {row["provider"]: row["requests"] for row in body["rows"]} == {"openai": 2, "anthropic": 1}
