"""Hard budgets from the client side: reserve before a provider call, raise before any provider request when refused.

    client = instrument(openai.OpenAI(), meter, enforce=True)   # or enforce=BudgetGate(url=..., api_key=...)
    try:
        client.chat.completions.create(model="gpt-4o-mini", max_tokens=512, messages=...)
    except BudgetExceeded as refused:
        ...  # refused.budget_id, refused.remaining_usd; no request reached the provider

The server prices the estimate with its price table (the SDK carries none): the provider, the model, an input
estimate (the request body's size at 4 bytes a token; only that number leaves the process) and the request's
`max_tokens` / `max_output_tokens` (or `default_max_output_tokens`). The reservation id goes on the call's usage
event, which settles it. Anything but an answer from spendstream (Redis down behind it, spendstream unreachable,
a model it cannot price) raises `BudgetUnavailable`: enforcement fails closed, never silently open.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from spendstream_sdk._version import __version__

# Bytes of a request body per input token, for the estimate: close for English text and JSON, and an estimate
# only (the settling event carries the real count).
BYTES_PER_TOKEN = 4
OUTPUT_LIMIT_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


class BudgetError(Exception):
    """A provider call was not made because of a hard budget (see the two subclasses)."""


class BudgetExceeded(BudgetError):
    """A hard budget has not enough left for the call's estimate (spendstream answered 402)."""

    def __init__(self, budget_id: str, remaining_usd: str) -> None:
        super().__init__(f"hard budget {budget_id} has {remaining_usd} USD left, less than this call's estimate")
        self.budget_id = budget_id
        self.remaining_usd = remaining_usd


class BudgetUnavailable(BudgetError):
    """The reservation could not be decided (`code`: the server's error code, or the transport's error)."""

    def __init__(self, code: str, budget_id: str | None = None) -> None:
        super().__init__(f"the call's hard budgets could not be checked ({code}); the call was not made")
        self.code = code
        self.budget_id = budget_id


@dataclass(frozen=True, slots=True)
class BudgetGate:
    """Where reservations are asked: alerts' base URL (spendstream's, in the one-process mode) and an ingest key."""

    url: str
    api_key: str
    timeout: float = 5.0
    default_max_output_tokens: int = 4096


def gate_of_meter(meter: object) -> BudgetGate:
    """The gate of a Meter or AsyncMeter: its own spendstream URL and key."""
    events_url = getattr(meter, "_url", None)
    headers = getattr(meter, "_headers", None)
    if not isinstance(events_url, str) or not isinstance(headers, Mapping):
        raise TypeError("enforce=True needs a spendstream Meter or AsyncMeter; else pass enforce=BudgetGate(...)")
    base = events_url.removesuffix("/v1/events")
    return BudgetGate(url=base, api_key=str(headers["Authorization"]).removeprefix("Bearer "))


def estimate_of(provider: str, body: object, default_max_output_tokens: int) -> dict[str, Any]:
    """The token estimate of one request body (the body is measured, never sent)."""
    if not isinstance(body, Mapping):
        return {"provider": provider, "model": "unknown", "input_tokens": 0, "max_output_tokens": 0}
    size = len(json.dumps(body, default=str, separators=(",", ":")))
    limit = next((body[f] for f in OUTPUT_LIMIT_FIELDS if isinstance(body.get(f), int)), default_max_output_tokens)
    model = body.get("model")
    return {
        "provider": provider,
        "model": model if isinstance(model, str) and model else "unknown",
        "input_tokens": size // BYTES_PER_TOKEN,
        "max_output_tokens": max(0, int(limit)),
    }


def _request(gate: BudgetGate, estimate: Mapping[str, Any], tags: Mapping[str, str]) -> dict[str, Any]:
    return {
        "url": f"{gate.url.rstrip('/')}/v1/reservations",
        "json": {"estimate": dict(estimate), "tags": dict(tags)},
        "headers": {"Authorization": f"Bearer {gate.api_key}", "User-Agent": f"spendstream-sdk-python/{__version__}"},
        "timeout": gate.timeout,
    }


def _decided(response: httpx.Response) -> str | None:
    """The reservation id to settle (None when nothing is held), or the typed refusal."""
    try:
        body: Any = response.json()
    except ValueError:
        body = {}
    if response.status_code == 201 and isinstance(body, dict):
        held = body.get("reservation_id") if body.get("enforcement") == "reserved" else None
        return held if isinstance(held, str) else None
    error = body.get("error") if isinstance(body, dict) else None
    if response.status_code == 402 and error == "budget_exceeded":
        raise BudgetExceeded(str(body.get("budget_id")), str(body.get("remaining_usd")))
    budget_id = body.get("budget_id") if isinstance(body, dict) else None
    raise BudgetUnavailable(
        error if isinstance(error, str) else f"http_{response.status_code}",
        budget_id if isinstance(budget_id, str) else None,
    )


class Reserver:
    """Reservations for a synchronous client, on keep-alive connections closed with the reserver."""

    def __init__(self, gate: BudgetGate) -> None:
        self.gate = gate
        self._http = httpx.Client()
        weakref.finalize(self, self._http.close)

    def reserve(self, provider: str, body: object, tags: Mapping[str, str]) -> str | None:
        estimate = estimate_of(provider, body, self.gate.default_max_output_tokens)
        try:
            response = self._http.post(**_request(self.gate, estimate, tags))
        except httpx.HTTPError as exc:
            raise BudgetUnavailable(type(exc).__name__) from None
        return _decided(response)

    def release(self, reservation_id: str) -> None:
        """Best effort: an unreleased reservation expires on its own."""
        try:
            self._http.delete(
                f"{self.gate.url.rstrip('/')}/v1/reservations/{reservation_id}",
                headers={"Authorization": f"Bearer {self.gate.api_key}"},
                timeout=self.gate.timeout,
            )
        except httpx.HTTPError:
            pass


class AsyncReserver:
    """Reservations for an asyncio client: a connection per request, since an asyncio client's connections cannot
    be closed from a finalizer (they belong to the loop that opened them)."""

    def __init__(self, gate: BudgetGate) -> None:
        self.gate = gate

    async def reserve(self, provider: str, body: object, tags: Mapping[str, str]) -> str | None:
        estimate = estimate_of(provider, body, self.gate.default_max_output_tokens)
        try:
            async with httpx.AsyncClient() as http:
                response = await http.post(**_request(self.gate, estimate, tags))
        except httpx.HTTPError as exc:
            raise BudgetUnavailable(type(exc).__name__) from None
        return _decided(response)

    async def release(self, reservation_id: str) -> None:
        """Best effort: an unreleased reservation expires on its own."""
        try:
            async with httpx.AsyncClient() as http:
                await http.delete(
                    f"{self.gate.url.rstrip('/')}/v1/reservations/{reservation_id}",
                    headers={"Authorization": f"Bearer {self.gate.api_key}"},
                    timeout=self.gate.timeout,
                )
        except httpx.HTTPError:
            pass
