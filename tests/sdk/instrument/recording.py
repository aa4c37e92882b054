"""A Tracker that keeps what it is given, refusing what the privacy guard refuses (content fields, PII-looking tags)
as the SDK's meter does, for unit tests (the end-to-end tests run the real meter)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from spendstream.guard import check_event


class Refused(ValueError):
    """The meter's refusal: names the field and the rule, never the value."""

    def __init__(self, field: str, code: str) -> None:
        super().__init__(f"{field}: {code}")
        self.field = field
        self.code = code


class RecordingTracker:
    """Keeps every tracked event (dicts of the arguments given, None values left out) in `events`."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def _keep(self, event: dict[str, Any]) -> str:
        event = {k: v for k, v in event.items() if v is not None}
        violations = check_event(event)
        if violations:
            raise Refused(violations[0].field, violations[0].code)
        self.events.append(event)
        return f"evt{len(self.events)}"

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
    ) -> str:
        return self._keep(
            {
                "provider": provider,
                "model": model,
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "latency_ms": latency_ms,
                "cached_input_tokens": cached_input_tokens,
                "reasoning_tokens": reasoning_tokens,
                "cache_creation_input_tokens": cache_creation_input_tokens,
                "cache_creation_1h_input_tokens": cache_creation_1h_input_tokens,
                "service_tier": service_tier,
                "reservation_id": reservation_id,
                "cost_usd": cost_usd,
                "timestamp": timestamp,
                "event_id": event_id,
                "tags": dict(tags) if tags else None,
            }
        )

    def track_unmetered(
        self, *, provider: str, model: str, latency_ms: int, reason: str, tags: Mapping[str, str] | None = None
    ) -> str:
        return self._keep(
            {
                "provider": provider,
                "model": model,
                "latency_ms": latency_ms,
                "unmetered": reason,
                "tags": dict(tags) if tags else None,
            }
        )

    def usage_only(self) -> list[dict[str, Any]]:
        """The events without latency (which varies), for exact comparison."""
        return [{k: v for k, v in e.items() if k != "latency_ms"} for e in self.events]
