"""OpenAI's costs, read through a local server answering the API reference's example costs object: `amount.value`
is a number in dollars already, and is stored as it is."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from spendstream.connectors.providers.openai import COSTS_PATH, USAGE_PATH, OpenAIReader
from spendstream.connectors.readonly_http import ReadOnlyHttp
from tests.connectors.fake_providers import provider_server

ADMIN_KEY = "sk-admin-test-0123456789abcdef"
DAY = date(2025, 8, 1)


def _page(results: list[dict[str, Any]]) -> dict[str, Any]:
    start = int(datetime(2025, 8, 1, tzinfo=UTC).timestamp())
    bucket = {"object": "bucket", "start_time": start, "end_time": start + 86400, "results": results}
    return {"object": "page", "data": [bucket], "has_more": False, "next_page": None}


async def test_the_documented_amount_value_0_06_usd_is_stored_as_0_06_dollars() -> None:
    reader = OpenAIReader()
    example = {
        "object": "organization.costs.result",
        "amount": {"value": Decimal("0.06"), "currency": "usd"},
        "line_item": "gpt-4o, input",
        "project_id": "proj_abc",
    }
    with provider_server("openai", ADMIN_KEY) as (url, state):
        state.canned[USAGE_PATH] = _page([])
        state.canned[COSTS_PATH] = _page([example])
        http = ReadOnlyHttp(url, reader.headers(ADMIN_KEY), max_attempts=1, backoff_seconds=0.01, max_wait_seconds=1)
        try:
            days = await reader.read(http, DAY, date(2025, 8, 2))
        finally:
            await http.close()
    (row,) = days[DAY]
    assert row.cost == Decimal("0.06") and row.currency == "usd"
    assert (row.model, row.project) == ("gpt-4o", "proj_abc")
