"""instrument() on the real anthropic package against the local provider: input counts the cache (Anthropic's
input_tokens excludes it), cache reads and writes (with their 1-hour part) land in their own fields, and streamed
calls record what message_start and message_delta reported."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import pytest

from spendstream_sdk.instrument import instrument, instrument_stats
from tests.providers import ProviderServer, anthropic_usage
from tests.sdk.instrument.recording import RecordingTracker

PROMPT = "Draft a reply to Alice Martin about her overdue invoice"
MESSAGES: list[Any] = [{"role": "user", "content": PROMPT}]
MODEL = "claude-sonnet-4-5"

# anthropic_usage(): 100 uncached + 4000 cache read + 1000 cache writes (600 for 5 minutes, 400 for 1 hour).
EVENT = {
    "provider": "anthropic",
    "model": MODEL,
    "input_tokens": 5100,
    "output_tokens": 250,
    "cached_input_tokens": 4000,
    "cache_creation_input_tokens": 1000,
    "cache_creation_1h_input_tokens": 400,
    "service_tier": "standard",
}


@pytest.fixture
def original(provider: ProviderServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=provider.anthropic_url, api_key="sk-ant-test", max_retries=0) as client:
        yield client


@pytest.fixture
async def async_original(provider: ProviderServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(base_url=provider.anthropic_url, api_key="sk-ant-test", max_retries=0) as c:
        yield c


def test_a_message_counts_the_cache_into_the_input_and_answers_as_the_original(
    original: anthropic.Anthropic, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker, tags={"feature": "billing"})

    metered = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    plain = original.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)

    assert type(client) is anthropic.Anthropic
    assert metered == plain
    assert tracker.usage_only() == [EVENT | {"tags": {"feature": "billing"}}]


def test_a_streamed_message_records_message_start_input_and_message_delta_output(
    original: anthropic.Anthropic, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker)

    stream = client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True)
    assert isinstance(stream, anthropic.Stream)
    events = list(stream)

    assert [e.type for e in events][0] == "message_start"
    assert [e.type for e in events][-1] == "message_stop"
    assert tracker.usage_only() == [EVENT]


def test_a_message_delta_repeating_the_input_usage_is_not_counted_twice(
    provider: ProviderServer, original: anthropic.Anthropic, tracker: RecordingTracker
) -> None:
    provider.config.delta_repeats_input_usage = True
    client = instrument(original, tracker)

    list(client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True))

    assert tracker.usage_only() == [EVENT]


def test_the_stream_helper_is_metered_and_its_text_and_final_message_are_unchanged(
    original: anthropic.Anthropic, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker)

    with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == "Hello from the local provider."
    assert final.usage.cache_read_input_tokens == 4000
    assert tracker.usage_only() == [EVENT]


def test_a_stream_closed_after_message_start_records_what_was_reported_by_then(
    original: anthropic.Anthropic, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker)

    with client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True) as stream:
        for event in stream:
            if event.type == "content_block_delta":
                break

    # message_start's early output count (1) is all the provider had reported of the output.
    assert tracker.usage_only() == [EVENT | {"output_tokens": 1}]


def test_a_usage_without_cache_fields_records_no_cache_parts(
    provider: ProviderServer, original: anthropic.Anthropic, tracker: RecordingTracker
) -> None:
    provider.config.messages_usage = {"input_tokens": 900, "output_tokens": 80}
    client = instrument(original, tracker)

    client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)

    assert tracker.usage_only() == [{"provider": "anthropic", "model": MODEL, "input_tokens": 900, "output_tokens": 80}]


@pytest.mark.parametrize("status", [400, 429, 529])
def test_a_provider_error_raises_the_same_exception_and_records_nothing(
    provider: ProviderServer, original: anthropic.Anthropic, tracker: RecordingTracker, status: int
) -> None:
    client = instrument(original, tracker)
    provider.fail(status, times=2)

    with pytest.raises(anthropic.APIStatusError) as metered:
        client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    with pytest.raises(anthropic.APIStatusError) as plain:
        original.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)

    assert type(metered.value) is type(plain.value)
    assert metered.value.status_code == status
    assert tracker.events == []


def test_an_error_event_mid_stream_raises_as_before_and_records_what_was_reported(
    provider: ProviderServer, original: anthropic.Anthropic, tracker: RecordingTracker
) -> None:
    provider.config.stream_error_after = 4
    client = instrument(original, tracker)

    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        list(client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True))

    assert tracker.usage_only() == [EVENT | {"output_tokens": 1}]


def test_nothing_of_the_prompt_or_the_answer_reaches_the_event(
    original: anthropic.Anthropic, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker)

    client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, system="You write for Alice")
    with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        stream.until_done()

    sent = repr(tracker.events)
    for fragment in ("Alice", "invoice", "Hello", "write for"):
        assert fragment not in sent


def test_a_pii_tag_returns_the_answer_and_the_event_is_dropped_and_counted(
    original: anthropic.Anthropic, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker, tags={"customer": "alice@example.com"})

    with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)

    assert text == "Hello from the local provider."
    assert tracker.events == []
    assert instrument_stats(tracker).dropped == 1


async def test_async_messages_streamed_or_not_and_the_async_helper_are_metered(
    async_original: anthropic.AsyncAnthropic, tracker: RecordingTracker
) -> None:
    client = instrument(async_original, tracker)

    await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    stream = await client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True)
    assert isinstance(stream, anthropic.AsyncStream)
    async for _ in stream:
        pass
    async with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as helper:
        final = await helper.get_final_message()

    assert type(client) is anthropic.AsyncAnthropic
    assert final.usage.output_tokens == 250
    assert tracker.usage_only() == [EVENT, EVENT, EVENT]


async def test_an_async_stream_closed_early_records_what_was_reported(
    async_original: anthropic.AsyncAnthropic, tracker: RecordingTracker
) -> None:
    client = instrument(async_original, tracker)

    async with client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream:
        async for _ in stream.text_stream:
            break

    assert tracker.usage_only() == [EVENT | {"output_tokens": 1}]


def test_the_beta_messages_resource_is_metered_too(original: anthropic.Anthropic, tracker: RecordingTracker) -> None:
    client = instrument(original, tracker)

    client.beta.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)

    assert tracker.usage_only() == [EVENT]


def test_cache_writes_without_a_breakdown_leave_the_1h_part_unset(
    provider: ProviderServer, original: anthropic.Anthropic, tracker: RecordingTracker
) -> None:
    usage = anthropic_usage()
    del usage["cache_creation"]
    provider.config.messages_usage = usage
    client = instrument(original, tracker)

    client.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)

    assert tracker.usage_only() == [{k: v for k, v in EVENT.items() if k != "cache_creation_1h_input_tokens"}]


def test_counting_tokens_is_not_a_billed_call_and_records_nothing(
    original: anthropic.Anthropic, tracker: RecordingTracker
) -> None:
    client = instrument(original, tracker)

    counted = client.messages.count_tokens(model=MODEL, messages=MESSAGES)

    assert counted.input_tokens == 100
    assert tracker.events == []
