"""Realistic usage events and request bodies, generated fast enough that the generator is not the bottleneck."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

MODELS = (
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o"),
    ("anthropic", "claude-3-5-sonnet-20241022"),
    ("google", "gemini-1.5-flash"),
    ("mistral", "mistral-large-latest"),
)
FEATURES = ("chat", "search", "summarize", "classify", "agent")
BATCH = 500  # events per HTTP request and per envelope: the most PRODUCT.md allows


def event(i: int, event_id: str, timestamp: str) -> dict[str, Any]:
    """Event number i: models, features and customers vary; half carry their cost, half are priced by rollup."""
    provider, model = MODELS[i % len(MODELS)]
    ev: dict[str, Any] = {
        "event_id": event_id,
        "provider": provider,
        "model": model,
        "input_tokens": 200 + (i * 37) % 4000,
        "output_tokens": 50 + (i * 13) % 800,
        "latency_ms": 100 + (i * 7) % 3000,
        "timestamp": timestamp,
        "tags": {"feature": FEATURES[i % len(FEATURES)], "customer_id": f"cust-{i % 1000}", "environment": "prod"},
    }
    if i % 4 == 0:
        ev["cached_input_tokens"] = ev["input_tokens"] // 2
    if i % 2 == 0:
        ev["cost_usd"] = round(0.000001 * (ev["input_tokens"] + 4 * ev["output_tokens"]), 9)
    return ev


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class BodyTemplate:
    """`{"events": [...]}` bodies of `size` events whose event_ids are unique per call of `body(prefix)`."""

    def __init__(self, size: int = BATCH, timestamp: str | None = None) -> None:
        stamp = timestamp or now_iso()
        head = b'{"event_id":"X"'
        self._rests: list[bytes] = []
        for i in range(size):
            encoded = orjson.dumps(event(i, "X", stamp))
            assert encoded.startswith(head)
            self._rests.append(encoded[len(head) :])

    def body(self, id_prefix: str) -> bytes:
        prefix = b'{"event_id":"' + id_prefix.encode() + b"-"
        return b'{"events":[' + b",".join(prefix + b'%d"' % i + rest for i, rest in enumerate(self._rests)) + b"]}"
