"""`instrument(client, meter)`: the official OpenAI and Anthropic clients, metered by metadata only.

    client = instrument(openai.OpenAI(), meter, tags={"feature": "search"})

The returned client behaves as the original (same answers, exceptions, streams) and records one usage event per
call: the model, the service tier and the usage numbers the provider reported — nothing of the request or the
answer's content is read into the event.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TypeVar, cast

from .calls import InstrumentStats, Recorder, counts_for, instrument_stats
from .tracker import Tracker

__all__ = ["InstrumentStats", "Tracker", "instrument", "instrument_stats"]

C = TypeVar("C")


def instrument(client: C, meter: Tracker, tags: Mapping[str, str] | None = None) -> C:
    """A copy of `client` (openai.OpenAI / AsyncOpenAI, anthropic.Anthropic / AsyncAnthropic, or a subclass)
    recording one event per call into `meter`, every event carrying `tags`. The original client stays unmetered."""
    fixed_tags = dict(tags) if tags else None
    # The client's own package is already imported; neither is a dependency of the SDK.
    openai = sys.modules.get("openai")
    if openai is not None and isinstance(client, openai.OpenAI | openai.AsyncOpenAI):
        from .openai import instrument_openai

        # Azure OpenAI bills at its own prices: its calls are provider "azure".
        provider = "azure" if isinstance(client, openai.AzureOpenAI | openai.AsyncAzureOpenAI) else "openai"
        return cast(C, instrument_openai(client, Recorder(meter, provider, fixed_tags, counts_for(meter))))
    anthropic = sys.modules.get("anthropic")
    if anthropic is not None and isinstance(client, anthropic.Anthropic | anthropic.AsyncAnthropic):
        from .anthropic import instrument_anthropic

        return cast(C, instrument_anthropic(client, Recorder(meter, "anthropic", fixed_tags, counts_for(meter))))
    raise TypeError(
        f"instrument() takes an openai.OpenAI, openai.AsyncOpenAI, anthropic.Anthropic or anthropic.AsyncAnthropic "
        f"client, not {type(client).__module__}.{type(client).__qualname__}"
    )
