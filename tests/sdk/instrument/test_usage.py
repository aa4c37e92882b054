"""The usage readers: each provider's usage object in spendstream's terms, every part inside its total."""

from __future__ import annotations

from types import SimpleNamespace as Obj

from spendstream_sdk.instrument import usage as read
from spendstream_sdk.instrument.usage import Usage


def test_openai_chat_usage_keeps_cached_and_reasoning_tokens_as_parts_of_their_totals() -> None:
    usage = Obj(
        prompt_tokens=1200,
        completion_tokens=300,
        prompt_tokens_details=Obj(cached_tokens=1000),
        completion_tokens_details=Obj(reasoning_tokens=0),
    )

    assert read.openai_chat(usage) == Usage(1200, 300, cached_input_tokens=1000, reasoning_tokens=0)


def test_an_unreported_detail_stays_none_and_a_missing_usage_reads_as_none() -> None:
    assert read.openai_chat(Obj(prompt_tokens=5, completion_tokens=2)) == Usage(5, 2)
    assert read.openai_chat(None) is None
    assert read.openai_responses(None) is None
    assert read.anthropic(None) is None


def test_a_boolean_is_not_a_count() -> None:
    assert read.openai_embeddings(Obj(prompt_tokens=True)) is None


def test_anthropic_input_is_uncached_plus_cache_read_plus_cache_writes() -> None:
    usage = Obj(
        input_tokens=10,
        cache_read_input_tokens=200,
        cache_creation_input_tokens=30,
        cache_creation=Obj(ephemeral_5m_input_tokens=20, ephemeral_1h_input_tokens=10),
        output_tokens=7,
    )

    assert read.anthropic(usage) == Usage(
        input_tokens=240,
        output_tokens=7,
        cached_input_tokens=200,
        cache_creation_input_tokens=30,
        cache_creation_1h_input_tokens=10,
    )


def test_anthropic_message_delta_output_is_cumulative_and_overrides_message_start() -> None:
    start = Obj(input_tokens=10, cache_read_input_tokens=0, cache_creation_input_tokens=0, output_tokens=1)
    delta = Obj(output_tokens=99, input_tokens=None)

    assert read.anthropic(start, delta) == Usage(10, 99, cached_input_tokens=0, cache_creation_input_tokens=0)
