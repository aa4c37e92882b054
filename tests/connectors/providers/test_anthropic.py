"""Anthropic's cost report, read through a local server answering the API reference's own example: `amount` is
decimal text in the currency's lowest unit ("123.45" in "USD" is $1.2345, which the reference rounds to $1.23),
so the stored cost is in dollars, as OpenAI's and the CSV import's are."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from spendstream.connectors.providers.anthropic import COSTS_PATH, USAGE_PATH, AnthropicReader
from spendstream.connectors.readonly_http import ReadOnlyHttp
from tests.connectors.fake_providers import provider_server

ADMIN_KEY = "sk-ant-admin01-test-0123456789"
DAY = date(2025, 8, 1)


def _page(results: list[dict[str, Any]]) -> dict[str, Any]:
    bucket = {"starting_at": "2025-08-01T00:00:00Z", "ending_at": "2025-08-02T00:00:00Z", "results": results}
    return {"data": [bucket], "has_more": False, "next_page": None}


def _cost(amount: str, currency: str = "USD", model: str | None = "claude-sonnet-4-5") -> dict[str, Any]:
    return {
        "amount": amount,
        "currency": currency,
        "context_window": "0-200k",
        "cost_type": "tokens",
        "description": f"{model} usage" if model else None,
        "model": model,
        "service_tier": "standard",
        "token_type": "uncached_input_tokens",
        "workspace_id": "wrkspc_01",
    }


async def _read(costs: list[dict[str, Any]]) -> dict[date, Any]:
    reader = AnthropicReader()
    with provider_server("anthropic", ADMIN_KEY) as (url, state):
        state.canned[USAGE_PATH] = _page([])
        state.canned[COSTS_PATH] = _page(costs)
        http = ReadOnlyHttp(url, reader.headers(ADMIN_KEY), max_attempts=1, backoff_seconds=0.01, max_wait_seconds=1)
        try:
            return await reader.read(http, DAY, date(2025, 8, 2))
        finally:
            await http.close()


async def test_the_documented_amount_123_45_usd_is_stored_as_1_2345_dollars_exactly() -> None:
    days = await _read([_cost("123.45")])
    (row,) = days[DAY]
    assert row.cost == Decimal("1.2345") and row.currency == "usd"
    assert (row.model, row.project) == ("claude-sonnet-4-5", "wrkspc_01")


async def test_amounts_of_one_model_add_up_in_dollars() -> None:
    days = await _read([_cost("123.45"), _cost("0.55"), _cost("10000")])
    (row,) = days[DAY]
    assert row.cost == Decimal("101.24")  # (123.45 + 0.55 + 10000) cents


async def test_a_currency_without_cents_is_scaled_by_its_own_minor_unit() -> None:
    (row,) = (await _read([_cost("1500", "JPY")]))[DAY]
    assert row.cost == Decimal("1500") and row.currency == "jpy"
