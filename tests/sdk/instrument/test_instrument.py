"""instrument() itself: what it accepts, and that the client packages stay optional."""

from __future__ import annotations

import subprocess
import sys

import openai
import pytest

from spendstream_sdk.instrument import instrument
from tests.providers import ProviderServer
from tests.sdk.instrument.recording import RecordingTracker


def test_instrument_refuses_what_is_not_an_openai_or_anthropic_client() -> None:
    with pytest.raises(TypeError, match="not builtins.object"):
        instrument(object(), RecordingTracker())


def test_importing_the_sdk_and_instrument_imports_neither_client_package() -> None:
    code = "import sys, spendstream_sdk.instrument; print('openai' in sys.modules, 'anthropic' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.split() == ["False", "False"]


def test_a_client_instrumented_twice_is_refused_rather_than_counted_twice(provider: ProviderServer) -> None:
    tracker = RecordingTracker()
    with openai.OpenAI(base_url=provider.openai_url, api_key="sk-test") as original:
        once = instrument(original, tracker)

        with pytest.raises(ValueError, match="already instrumented"):
            instrument(once, tracker)


def test_azure_openai_calls_are_recorded_as_provider_azure(provider: ProviderServer) -> None:
    tracker = RecordingTracker()
    with openai.AzureOpenAI(
        azure_endpoint=provider.base_url, api_key="az-test", api_version="2024-10-21", max_retries=0
    ) as original:
        client = instrument(original, tracker)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

    assert [(e["provider"], e["input_tokens"]) for e in tracker.events] == [("azure", 1200)]
