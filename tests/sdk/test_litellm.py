"""The LiteLLM callback with the real litellm package (offline: `mock_response`), through a running spendstream
and through the recording server that shows the exact events sent."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # the price table shipped with litellm, no fetch

import litellm
import pytest
from litellm.proxy.types_utils.utils import get_instance_fn
from litellm.types.utils import (
    CompletionTokensDetailsWrapper,
    ModelResponse,
    PromptTokensDetailsWrapper,
    Usage,
)

from spendstream_sdk import Meter
from spendstream_sdk.litellm import SpendstreamCallback
from tests.sdk.conftest import Workspace
from tests.sdk.recorder import recording

# litellm's own types trip a pydantic warning when first built; it is theirs, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:Items? .* using the `ReadOnly` qualifier:UserWarning")

PROMPT = "Draft a reply to Jane about her overdue invoice"
ANSWER = "Dear Jane, your invoice is overdue"


def response(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> ModelResponse:
    return ModelResponse(
        model="gpt-4o-mini",
        choices=[{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": ANSWER}}],
        usage=Usage(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            prompt_tokens_details=PromptTokensDetailsWrapper(cached_tokens=cached) if cached else None,
            completion_tokens_details=CompletionTokensDetailsWrapper(reasoning_tokens=reasoning) if reasoning else None,
        ),
    )


@pytest.fixture
def callback_for(meters: list[Any]) -> Any:
    """A callback registered with litellm for the test (unregistered after it)."""
    made: list[SpendstreamCallback] = []

    def make(meter: Meter, **kwargs: Any) -> SpendstreamCallback:
        meters.append(meter)
        callback = SpendstreamCallback(meter=meter, **kwargs)
        made.append(callback)
        litellm.callbacks = [callback]
        return callback

    yield make
    litellm.callbacks = []


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """litellm runs success callbacks after returning (a thread for sync calls): wait for them."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the callback did not run"
        time.sleep(0.02)


def test_each_call_sends_litellms_usage_and_cost_and_nothing_of_the_messages(callback_for: Any) -> None:
    with recording() as server:
        meter = Meter(url=server.url, api_key="k", flush_interval=0.05)
        callback = callback_for(meter, tags={"feature": "drafts"})
        answer = litellm.completion(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": PROMPT}],
            mock_response=response(1000, 300, cached=400, reasoning=120),
            metadata={"spendstream_tags": {"customer_id": "cust-12"}},
        )
        assert answer.choices[0].message.content == ANSWER  # the caller's answer, untouched
        wait_for(lambda: callback.tracked == 1)
        assert meter.flush(timeout=10)
    (request,) = server.requests
    (event,) = request.events
    cost = event.pop("cost_usd")
    assert cost == pytest.approx(litellm.completion_cost(answer), rel=1e-9) and cost > 0  # LiteLLM's own figure
    assert {k: v for k, v in event.items() if k not in ("event_id", "timestamp", "latency_ms")} == {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 1000,
        "output_tokens": 300,
        "cached_input_tokens": 400,
        "reasoning_tokens": 120,
        "tags": {"feature": "drafts", "customer_id": "cust-12"},
    }
    raw = str(request.events)
    assert "Jane" not in raw and "invoice" not in raw


def test_anthropic_cache_reads_and_writes_are_parts_of_the_input(callback_for: Any) -> None:
    with recording() as server:
        meter = Meter(url=server.url, api_key="k", flush_interval=0.05)
        callback = callback_for(meter)
        # Anthropic's usage as LiteLLM reports it: prompt_tokens include the cache reads and writes.
        usage = Usage(
            prompt_tokens=1500,
            completion_tokens=80,
            total_tokens=1580,
            cache_read_input_tokens=1000,
            cache_creation_input_tokens=400,
        )
        mocked = ModelResponse(
            model="claude-sonnet-4-5",
            choices=[{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": ANSWER}}],
            usage=usage,
        )
        litellm.completion(
            model="anthropic/claude-sonnet-4-5", messages=[{"role": "user", "content": PROMPT}], mock_response=mocked
        )
        wait_for(lambda: callback.tracked == 1)
        assert meter.flush(timeout=10)
    (event,) = server.requests[0].events
    assert (event["provider"], event["model"]) == ("anthropic", "claude-sonnet-4-5")
    assert (event["input_tokens"], event["cached_input_tokens"], event["cache_creation_input_tokens"]) == (
        1500,
        1000,
        400,
    )
    assert "cost_usd" not in event or len(repr(event["cost_usd"]).partition(".")[2]) <= 12


def test_a_pii_tag_is_refused_counted_and_the_call_still_answers(callback_for: Any) -> None:
    with recording() as server:
        meter = Meter(url=server.url, api_key="k", flush_interval=0.05)
        callback = callback_for(meter)
        answer = litellm.completion(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": PROMPT}],
            mock_response=response(10, 5),
            metadata={"spendstream_tags": {"customer": "jane.roe@example.com"}},
        )
        assert answer.choices[0].message.content == ANSWER
        wait_for(lambda: callback.refused == 1)
        assert meter.flush(timeout=10)
    assert server.requests == [] and callback.tracked == 0


async def test_sync_and_async_calls_are_read_back_exactly_from_usage(workspace: Workspace, callback_for: Any) -> None:
    meter = Meter(url=workspace.url, api_key=workspace.ingest_key, flush_interval=0.05)
    callback = callback_for(meter)
    litellm.completion(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": PROMPT}],
        mock_response=response(1200, 300, cached=200, reasoning=100),
    )
    await litellm.acompletion(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], mock_response=response(800, 100)
    )
    await _until(lambda: callback.tracked == 2)
    assert await asyncio.to_thread(meter.flush, 20)
    body = await asyncio.to_thread(workspace.usage_when, lambda b: b["totals"]["requests"] == 2)
    totals = body["totals"]
    assert (totals["input_tokens"], totals["output_tokens"]) == (2000, 400)
    assert (totals["cached_input_tokens"], totals["reasoning_tokens"]) == (200, 100)


async def _until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the callback did not run"
        await asyncio.sleep(0.02)


def test_the_proxy_loads_the_callback_by_name_and_it_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, meters: list[Any]
) -> None:
    with recording() as server:
        monkeypatch.setenv("SPENDSTREAM_URL", server.url)
        monkeypatch.setenv("SPENDSTREAM_API_KEY", "proxy-key")
        # What the proxy does with `litellm_settings: callbacks: spendstream_sdk.litellm.spendstream_callback`.
        loaded = get_instance_fn("spendstream_sdk.litellm.spendstream_callback")
        assert isinstance(loaded, SpendstreamCallback)
        fresh = SpendstreamCallback()  # the loaded instance is the module's; a fresh one keeps tests apart
        litellm.callbacks = [fresh]
        try:
            litellm.completion(
                model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], mock_response=response(7, 3)
            )
            wait_for(lambda: fresh.tracked == 1)
            made = fresh.meter
            assert isinstance(made, Meter)  # made from SPENDSTREAM_URL and SPENDSTREAM_API_KEY
            meters.append(made)
            assert made.flush(timeout=10)
        finally:
            litellm.callbacks = []
    (request,) = server.requests
    assert request.headers["Authorization"] == "Bearer proxy-key"
    assert (request.events[0]["input_tokens"], request.events[0]["output_tokens"]) == (7, 3)
