"""instrument() on the real openai package against the local provider: the client answers as before and each call
records its usage exactly once, streamed calls included."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import openai
import pytest

from spendstream_sdk import tags
from spendstream_sdk.instrument import InstrumentStats, calls, instrument, instrument_stats
from tests.providers import ProviderServer, openai_chat_usage
from tests.sdk.instrument.recording import RecordingTracker

PROMPT = "Summarise the contract Alice Martin signed on 3 March"
MESSAGES: list[Any] = [{"role": "user", "content": PROMPT}]

CHAT_EVENT = {
    "provider": "openai",
    "model": "gpt-4o-mini",
    "input_tokens": 1200,
    "output_tokens": 300,
    "cached_input_tokens": 1000,
    "reasoning_tokens": 120,
    "service_tier": "default",
}
RESPONSES_EVENT = {
    "provider": "openai",
    "model": "gpt-4.1",
    "input_tokens": 2000,
    "output_tokens": 500,
    "cached_input_tokens": 1500,
    "reasoning_tokens": 200,
    "service_tier": "default",
}


@pytest.fixture
def original(provider: ProviderServer) -> Iterator[openai.OpenAI]:
    """The application's client (closed after the test; instrumented copies share its connection pool)."""
    with openai.OpenAI(base_url=provider.openai_url, api_key="sk-test", max_retries=0) as client:
        yield client


@pytest.fixture
async def async_original(provider: ProviderServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(base_url=provider.openai_url, api_key="sk-test", max_retries=0) as client:
        yield client


def test_the_instrumented_client_is_an_openai_client_and_answers_as_the_original(
    original: openai.OpenAI, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker)

    metered = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    plain = original.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert type(client) is openai.OpenAI
    assert type(metered) is type(plain)
    assert metered.model_dump(exclude={"created"}) == plain.model_dump(exclude={"created"})
    assert len(tracker.events) == 1  # the original client stays unmetered


def test_a_chat_completion_records_its_usage_with_cached_and_reasoning_tokens_and_tags(
    provider: ProviderServer, original: openai.OpenAI, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker, tags={"feature": "summaries"})

    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert tracker.usage_only() == [CHAT_EVENT | {"tags": {"feature": "summaries"}}]
    assert instrument_stats(tracker) == InstrumentStats(recorded=1, unmetered=0, dropped=0)
    assert isinstance(tracker.events[0]["latency_ms"], int)


def test_the_answer_model_is_recorded_rather_than_the_alias_requested(
    provider: ProviderServer, original: openai.OpenAI, tracker: RecordingTracker
) -> None:
    provider.config.response_model = "gpt-4o-mini-2024-07-18"
    client = instrument(original, tracker)

    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert tracker.events[0]["model"] == "gpt-4o-mini-2024-07-18"


def test_a_stream_asks_for_usage_and_the_caller_never_sees_the_usage_chunk(
    provider: ProviderServer, original: openai.OpenAI, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker)
    plain_chunks = list(original.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))

    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert isinstance(stream, openai.Stream)
    assert tracker.events == []  # nothing is known before the stream ends
    chunks = list(stream)

    assert provider.received("/v1/chat/completions")[-1].body["stream_options"] == {"include_usage": True}
    assert [c.choices for c in chunks] == [c.choices for c in plain_chunks]
    assert all(c.usage is None for c in chunks)
    assert tracker.usage_only() == [CHAT_EVENT]


def test_a_caller_who_asked_for_include_usage_sees_the_usage_chunk_as_usual(
    provider: ProviderServer, original: openai.OpenAI, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker)

    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )

    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 1200
    assert tracker.usage_only() == [CHAT_EVENT]


def test_a_caller_who_declined_include_usage_is_still_metered_without_seeing_the_chunk(
    provider: ProviderServer, original: openai.OpenAI, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker)

    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": False}
        )
    )

    assert all(c.choices for c in chunks)
    assert tracker.usage_only() == [CHAT_EVENT]


def test_a_stream_closed_early_records_the_call_with_its_reason_never_zero_tokens(
    provider: ProviderServer, original: openai.OpenAI, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker)

    with client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True) as stream:
        for _ in stream:
            break

    assert tracker.usage_only() == [
        {"provider": "openai", "model": "gpt-4o-mini", "unmetered": "stream_closed_before_usage"}
    ]
    assert instrument_stats(tracker) == InstrumentStats(recorded=0, unmetered=1, dropped=0)


def test_a_stream_dropped_unread_is_recorded_when_collected(
    provider: ProviderServer, original: openai.OpenAI, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker)

    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    del stream
    gc.collect()

    assert [e["unmetered"] for e in tracker.events] == ["stream_closed_before_usage"]


def test_a_stream_ending_without_usage_records_that_the_provider_reported_none(
    provider: ProviderServer, original: openai.OpenAI, tracker: RecordingTracker
) -> None:
    provider.config.chat_stream_usage = False
    client = instrument(original, tracker)

    list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))

    assert [e["unmetered"] for e in tracker.events] == ["no_usage_reported"]


def test_a_stream_failing_midway_raises_as_before_and_records_the_failure(
    provider: ProviderServer, original: openai.OpenAI, tracker: RecordingTracker
) -> None:
    provider.config.stream_error_after = 3
    client = instrument(original, tracker)

    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError, match="failed mid-stream"):
        list(stream)

    assert [e["unmetered"] for e in tracker.events] == ["stream_error_before_usage"]


def test_latency_runs_until_the_stream_ends(
    original: openai.OpenAI, provider: ProviderServer, tracker: RecordingTracker
) -> None:
    provider.config.stream_delay = 0.02  # the server waits 20 ms before each of its 9 events
    client = instrument(original, tracker)

    list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))

    assert tracker.events[0]["latency_ms"] >= 9 * 20


@pytest.mark.parametrize("status", [400, 429, 500])
def test_a_provider_error_raises_the_same_exception_and_records_nothing(
    provider: ProviderServer, original: openai.OpenAI, tracker: RecordingTracker, status: int
) -> None:
    client = instrument(original, tracker)
    provider.fail(status, times=2)

    with pytest.raises(openai.APIStatusError) as metered:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.APIStatusError) as plain:
        original.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert type(metered.value) is type(plain.value)
    assert metered.value.status_code == status
    assert tracker.events == []
    assert instrument_stats(tracker).recorded == 0


def test_the_responses_api_records_its_usage_streamed_or_not(
    provider: ProviderServer, original: openai.OpenAI, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker)

    answer = client.responses.create(model="gpt-4.1", input=PROMPT)
    events = list(client.responses.create(model="gpt-4.1", input=PROMPT, stream=True))

    assert answer.output_text == "Hello from the local provider."
    assert [e.type for e in events][-1] == "response.completed"
    assert tracker.usage_only() == [RESPONSES_EVENT, RESPONSES_EVENT]


def test_embeddings_record_their_input_tokens(
    original: openai.OpenAI, provider: ProviderServer, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker)

    answer = client.embeddings.create(model="text-embedding-3-small", input=PROMPT)

    assert answer.data[0].embedding == [0.25, -0.5, 0.125]
    assert tracker.usage_only() == [
        {"provider": "openai", "model": "text-embedding-3-small", "input_tokens": 42, "output_tokens": 0}
    ]


def test_with_options_on_an_instrumented_client_stays_instrumented(
    provider: ProviderServer, original: openai.OpenAI, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker)

    client.with_options(timeout=5).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert tracker.usage_only() == [CHAT_EVENT]


def test_a_raw_response_is_returned_as_usual_and_recorded_as_unread(
    provider: ProviderServer, original: openai.OpenAI, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker)

    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)

    assert raw.parse().usage is not None
    assert [e["unmetered"] for e in tracker.events] == ["raw_response_not_read"]


def test_nothing_of_the_prompt_or_the_answer_reaches_the_event(
    provider: ProviderServer, original: openai.OpenAI, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker, tags={"feature": "legal"})

    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, user="alice@example.com")
    list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    client.responses.create(model="gpt-4.1", input=PROMPT, instructions="Be terse about Alice")

    sent = repr(tracker.events)
    for fragment in ("Alice", "contract", "Hello", "provider.", "alice@example.com", "terse"):
        assert fragment not in sent
    allowed = {"provider", "model", "input_tokens", "output_tokens", "latency_ms", "cached_input_tokens"}
    allowed |= {"reasoning_tokens", "service_tier", "tags"}
    assert all(set(e) <= allowed for e in tracker.events)


def test_a_pii_tag_returns_the_answer_drops_the_event_counts_it_and_logs_no_value(
    provider: ProviderServer, original: openai.OpenAI, tracker: RecordingTracker, caplog: pytest.LogCaptureFixture
) -> None:
    client = instrument(original, tracker, tags={"customer": "alice@example.com"})

    with caplog.at_level(logging.WARNING, logger="spendstream_sdk.instrument"):
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert answer.choices[0].message.content == "Hello from the local provider."
    assert tracker.events == []
    assert instrument_stats(tracker).dropped == 1
    assert "tags.customer" in caplog.text and "1 dropped" in caplog.text
    assert "alice" not in caplog.text


async def test_async_calls_and_streams_record_their_usage(
    async_original: openai.AsyncOpenAI, provider: ProviderServer, tracker: RecordingTracker
) -> None:
    client = instrument(async_original, tracker)

    await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stream = await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert isinstance(stream, openai.AsyncStream)
    chunks = [chunk async for chunk in stream]
    responses = await client.responses.create(model="gpt-4.1", input=PROMPT, stream=True)
    async for _ in responses:
        pass

    assert type(client) is openai.AsyncOpenAI
    assert all(c.choices for c in chunks)
    assert tracker.usage_only() == [CHAT_EVENT, CHAT_EVENT, RESPONSES_EVENT]


async def test_an_async_stream_closed_early_records_the_reason(
    provider: ProviderServer, async_original: openai.AsyncOpenAI, tracker: RecordingTracker
) -> None:
    client = instrument(async_original, tracker)

    async with await client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True) as stream:
        async for _ in stream:
            break

    assert [e["unmetered"] for e in tracker.events] == ["stream_closed_before_usage"]


def test_cache_writes_reported_by_openai_are_recorded_as_part_of_the_input(
    provider: ProviderServer, original: openai.OpenAI, tracker: RecordingTracker
) -> None:
    usage = openai_chat_usage()
    usage["prompt_tokens_details"]["cache_write_tokens"] = 150
    provider.config.chat_usage = usage
    client = instrument(original, tracker)

    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert tracker.usage_only() == [CHAT_EVENT | {"cache_creation_input_tokens": 150}]


def test_the_stream_helpers_and_parse_are_metered_through_the_same_request_path(
    original: openai.OpenAI, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker)

    with client.chat.completions.stream(model="gpt-4o-mini", messages=MESSAGES) as chat:
        kinds = [event.type for event in chat]
    with client.responses.stream(model="gpt-4.1", input=PROMPT) as responses:
        final = responses.get_final_response()
    client.chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES)

    assert kinds[-1] == "content.done"
    assert final.output_text == "Hello from the local provider."
    assert tracker.usage_only() == [CHAT_EVENT, RESPONSES_EVENT, CHAT_EVENT]


def test_a_stream_carries_the_tags_of_the_block_it_was_opened_in(
    original: openai.OpenAI, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker, tags={"feature": "search"})

    with tags(route="/ask", feature="overridden-by-the-client"):
        stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    list(stream)

    assert tracker.events[0]["tags"] == {"route": "/ask", "feature": "search"}


def test_a_call_that_succeeds_on_the_clients_retry_is_recorded_once(
    provider: ProviderServer, tracker: RecordingTracker
) -> None:
    provider.fail(500, times=1)
    with openai.OpenAI(base_url=provider.openai_url, api_key="sk-test", max_retries=1) as retrying:
        client = instrument(retrying, tracker)
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    assert len(provider.received("/v1/chat/completions")) == 2
    assert tracker.usage_only() == [CHAT_EVENT]


def test_a_stream_held_open_past_the_latency_bound_is_recorded_with_the_bound(
    original: openai.OpenAI, tracker: RecordingTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = instrument(original, tracker)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    started = time.perf_counter()
    # Two hours later, as the instrumentation's clock sees it.
    monkeypatch.setattr(calls, "time", SimpleNamespace(perf_counter=lambda: started + 2 * 3600))

    list(stream)

    assert tracker.events[0]["latency_ms"] == 3_600_000
    assert tracker.events[0]["input_tokens"] == 1200


def test_a_streaming_response_is_the_callers_to_read_and_recorded_as_unread(
    original: openai.OpenAI, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker)

    with client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MESSAGES) as raw:
        answer = raw.parse()

    assert answer.usage is not None and answer.usage.prompt_tokens == 1200
    assert [e["unmetered"] for e in tracker.events] == ["raw_response_not_read"]


async def test_an_async_stream_broken_out_of_and_dropped_is_recorded_once(
    async_original: openai.AsyncOpenAI, tracker: RecordingTracker
) -> None:
    client = instrument(async_original, tracker)

    stream = await client.responses.create(model="gpt-4.1", input=PROMPT, stream=True)
    async for _ in stream:
        break
    del stream
    # asyncio closes a dropped async generator in a task of its own: let the loop run those.
    for _ in range(10):
        gc.collect()
        await asyncio.sleep(0)

    assert tracker.usage_only() == [
        {"provider": "openai", "model": "gpt-4.1", "unmetered": "stream_closed_before_usage"}
    ]
