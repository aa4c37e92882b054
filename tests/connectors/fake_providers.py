"""Local HTTP servers that answer as OpenAI's organization Usage/Costs APIs and Anthropic's Admin usage and cost
reports do (shapes from the providers' API references), one bucket per page so that every report pages.

Each records every request (method, path, query) and can be told to answer the next requests with a status
(429 with Retry-After, 500, 401) before answering normally again.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Figures:
    """One day, model and project at the provider."""

    input_tokens: int  # OpenAI: every input token; Anthropic: uncached input only
    output_tokens: int
    cost: Decimal  # in dollars
    cached: int = 0  # cache reads
    requests: int = 0  # OpenAI only
    cache_5m: int = 0  # Anthropic only
    cache_1h: int = 0  # Anthropic only


@dataclass
class ProviderState:
    admin_key: str
    data: dict[tuple[date, str, str], Figures] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)
    faults: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # answered first, in order
    canned: dict[str, Any] = field(default_factory=dict)  # path -> a body answered as is (a documented example)
    # The request numbered `hold_at` (1 = the first) sets `held` and is answered only once `release` is set: a
    # provider slow on one page, so that a test knows where the client is when it acts.
    hold_at: int | None = None
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def days(self, start: date, end: date) -> list[date]:
        return [start + timedelta(days=i) for i in range((end - start).days)]

    def methods(self) -> set[str]:
        return {m for m, _, _ in self.requests}


def _unix(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def _openai_bucket(state: ProviderState, path: str, day: date) -> dict[str, Any]:
    rows = [(m, p, f) for (d, m, p), f in sorted(state.data.items()) if d == day]
    results: list[dict[str, Any]]
    if path.endswith("/usage/completions"):
        results = [
            {
                "object": "organization.usage.completions.result",
                "input_tokens": f.input_tokens,
                "output_tokens": f.output_tokens,
                "input_cached_tokens": f.cached,
                "input_audio_tokens": 0,
                "output_audio_tokens": 0,
                "num_model_requests": f.requests,
                "project_id": p,
                "user_id": None,
                "api_key_id": None,
                "model": m,
                "batch": None,
            }
            for m, p, f in rows
        ]
    else:
        # The bill split in two line items per model (input and output), as OpenAI itemises it.
        results = []
        for m, p, f in rows:
            half = (f.cost / 2).quantize(Decimal("0.000001"))
            for item, amount in ((f"{m}, input", half), (f"{m}, output", f.cost - half)):
                results.append(
                    {
                        "object": "organization.costs.result",
                        "amount": {"value": amount, "currency": "usd"},
                        "line_item": item,
                        "project_id": p,
                    }
                )
    return {
        "object": "bucket",
        "start_time": _unix(day),
        "end_time": _unix(day + timedelta(days=1)),
        "results": results,
    }


def _anthropic_bucket(state: ProviderState, path: str, day: date) -> dict[str, Any]:
    rows = [(m, p, f) for (d, m, p), f in sorted(state.data.items()) if d == day]
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    if path.endswith("/usage_report/messages"):
        results = [
            {
                "uncached_input_tokens": f.input_tokens,
                "cache_creation": {"ephemeral_1h_input_tokens": f.cache_1h, "ephemeral_5m_input_tokens": f.cache_5m},
                "cache_read_input_tokens": f.cached,
                "output_tokens": f.output_tokens,
                "server_tool_use": {"web_search_requests": 0},
                "api_key_id": None,
                "workspace_id": p,
                "model": m,
                "service_tier": None,
                "context_window": None,
            }
            for m, p, f in rows
        ]
    else:
        results = [
            {
                "currency": "USD",
                "amount": str(f.cost * 100),  # the lowest currency unit: cents, as decimal text
                "workspace_id": p,
                "description": f"{m} usage",
                "cost_type": "tokens",
                "context_window": "0-200k",
                "model": m,
                "service_tier": "standard",
                "token_type": "uncached_input_tokens",
            }
            for m, p, f in rows
        ]
    return {
        "starting_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "ending_at": (start + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "results": results,
    }


def _json(body: Any) -> str:
    """JSON with each Decimal written as a number of its exact digits (OpenAI's `amount.value` is a number)."""
    text = json.dumps(body, default=lambda d: f"@@{d}@@")
    return re.sub(r'"@@([-0-9.Ee+]+)@@"', r"\1", text)


def _handler(state: ProviderState, provider: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            raw = _json(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):  # the client was killed while the page was held
                pass

        def _any(self) -> None:
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            with state.lock:
                state.requests.append((self.command, parts.path, query))
                fault = state.faults.pop(0) if state.faults else None
                hold = state.hold_at == len(state.requests)
            if hold:
                state.held.set()
                state.release.wait(timeout=60)
            if fault is not None:
                self._answer(fault[0], {"error": {"message": "injected"}}, fault[1])
                return
            if self.command != "GET":
                self._answer(405, {"error": "read-only"})
                return
            if parts.path in state.canned:
                self._answer(200, state.canned[parts.path])
                return
            if provider == "openai":
                if self.headers.get("Authorization", "") != f"Bearer {state.admin_key}":
                    self._answer(401, {"error": "bad key"})
                    return
                start = datetime.fromtimestamp(int(query["start_time"][0]), UTC).date()
                end = datetime.fromtimestamp(int(query["end_time"][0]), UTC).date()
            else:
                if self.headers.get("x-api-key", "") != state.admin_key or not self.headers.get("anthropic-version"):
                    self._answer(401, {"error": "bad key"})
                    return
                start = datetime.fromisoformat(query["starting_at"][0]).date()
                end = datetime.fromisoformat(query["ending_at"][0]).date()
            days = state.days(start, end)
            index = int(query.get("page", ["0"])[0].removeprefix("page_"))
            bucket = (_openai_bucket if provider == "openai" else _anthropic_bucket)(state, parts.path, days[index])
            more = index + 1 < len(days)
            self._answer(
                200,
                {
                    "object": "page",
                    "data": [bucket],
                    "has_more": more,
                    "next_page": f"page_{index + 1}" if more else None,
                },
            )

        do_GET = _any
        do_POST = _any
        do_PUT = _any
        do_DELETE = _any
        do_PATCH = _any

    return Handler


@contextmanager
def provider_server(provider: str, admin_key: str) -> Iterator[tuple[str, ProviderState]]:
    """(base URL, state) of a server answering as `provider` ("openai" or "anthropic") to `admin_key` only."""
    state = ProviderState(admin_key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state, provider))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
