"""What instrumentation needs of a meter: the two calls that record a provider call (`Meter` and `AsyncMeter` have
both)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol


class Tracker(Protocol):
    """A sink for usage events. `track` raises a ValueError (the SDK's EventRefused) when the privacy guard refuses
    the event; neither call blocks on the network."""

    def track(
        self,
        *,
        provider: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        latency_ms: int,
        cached_input_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        cache_creation_input_tokens: int | None = None,
        cache_creation_1h_input_tokens: int | None = None,
        service_tier: str | None = None,
        reservation_id: str | None = None,
        cost_usd: float | int | None = None,
        timestamp: datetime | None = None,
        event_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str: ...

    def track_unmetered(
        self, *, provider: str, model: str, latency_ms: int, reason: str, tags: Mapping[str, str] | None = None
    ) -> str: ...
