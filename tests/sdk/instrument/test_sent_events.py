"""What a real Meter sends for instrumented calls, read from the request bodies themselves (tests/sdk/recorder.py
stands in for ingest): the model, the service tier and the usage numbers — nothing of a prompt or an answer."""

from __future__ import annotations

from typing import Any

import anthropic
import openai

from spendstream_sdk import Meter
from spendstream_sdk.instrument import instrument
from tests.providers import ProviderServer
from tests.sdk.recorder import recording

SECRET = "Ignore the contract Alice Martin signed; her card is 4111 1111 1111 1111"
MESSAGES: list[Any] = [{"role": "system", "content": "You are terse"}, {"role": "user", "content": SECRET}]
FIELDS = {
    "event_id",
    "timestamp",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "latency_ms",
    "cached_input_tokens",
    "reasoning_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "service_tier",
    "tags",
}


def test_the_bytes_sent_for_every_kind_of_call_hold_no_prompt_or_answer_text(provider: ProviderServer) -> None:
    with recording() as ingest, Meter(url=ingest.url, api_key="ssk_ingest_test") as meter:
        with openai.OpenAI(base_url=provider.openai_url, api_key="sk-test", max_retries=0) as gpt_client:
            gpt = instrument(gpt_client, meter, tags={"feature": "legal"})
            gpt.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, user="alice")
            list(gpt.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
            list(gpt.responses.create(model="gpt-4.1", input=SECRET, instructions="Be terse", stream=True))
            gpt.embeddings.create(model="text-embedding-3-small", input=SECRET)
        with anthropic.Anthropic(base_url=provider.anthropic_url, api_key="k", max_retries=0) as claude_client:
            claude = instrument(claude_client, meter, tags={"feature": "legal"})
            claude.messages.create(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES[1:], system="terse")
            with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=64, messages=MESSAGES[1:]) as stream:
                stream.until_done()
        assert meter.flush(timeout=30)

    events = [event for request in ingest.requests for event in request.events]
    sent = repr(events)
    assert len(events) == 6
    for fragment in ("Alice", "contract", "4111", "terse", "Hello", "local provider", "alice"):
        assert fragment not in sent
    assert all(set(event) <= FIELDS for event in events)
    assert {event["tags"]["feature"] for event in events} == {"legal"}
