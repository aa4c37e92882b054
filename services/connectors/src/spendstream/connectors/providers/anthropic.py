"""Anthropic's Admin API usage and cost reports (an Admin key, `x-api-key`, `anthropic-version`).

`GET /v1/organizations/usage_report/messages` (daily buckets, grouped by model and workspace) gives uncached
input, cache reads and the 5-minute and 1-hour cache writes, and output; spendstream's `input_tokens` is their
sum (uncached + cache read + cache writes). It counts no requests. `GET /v1/organizations/cost_report` (daily,
grouped by workspace and description, which adds the model) gives `amount` as decimal text in the currency's
lowest unit with its `currency` (API reference: "123.45" in "USD" is $1.23, exactly $1.2345); the row's cost is
that in the major unit (money.py), as OpenAI's and the CSV import's are.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from spendstream.connectors.providers import Days, Rows
from spendstream.connectors.providers.money import add_cost, currency_code, decimal_amount, from_lowest_unit
from spendstream.connectors.providers.paging import MalformedReport, buckets
from spendstream.connectors.readonly_http import ReadOnlyHttp

USAGE_PATH = "/v1/organizations/usage_report/messages"
COSTS_PATH = "/v1/organizations/cost_report"
API_VERSION = "2023-06-01"


def _rfc3339(day: date) -> str:
    return datetime.combine(day, time(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _day(bucket: Any) -> date:
    try:
        return datetime.fromisoformat(str(bucket.get("starting_at"))).astimezone(UTC).date()
    except ValueError:
        raise MalformedReport("bucket_without_starting_at") from None


def _count(container: Any, name: str) -> int:
    value = (container or {}).get(name) or 0
    if not isinstance(value, int) or value < 0:
        raise MalformedReport(f"invalid_{name}")
    return value


class AnthropicReader:
    def headers(self, admin_key: str) -> dict[str, str]:
        return {"x-api-key": admin_key, "anthropic-version": API_VERSION}

    async def read(self, http: ReadOnlyHttp, start: date, end: date) -> Days:
        window: dict[str, str | int | list[str]] = {
            "starting_at": _rfc3339(start),
            "ending_at": _rfc3339(end),
            "bucket_width": "1d",
            "limit": 31,
        }
        rows = Rows(
            {
                "input_tokens": 0,
                "cached_input_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_creation_1h_input_tokens": 0,
                "output_tokens": 0,
                "requests": None,
            }
        )

        async for bucket in buckets(http, USAGE_PATH, {**window, "group_by[]": ["model", "workspace_id"]}):
            day = _day(bucket)
            for result in bucket["results"]:
                found = rows.row(day, str(result.get("model") or ""), str(result.get("workspace_id") or ""))
                uncached = _count(result, "uncached_input_tokens")
                read = _count(result, "cache_read_input_tokens")
                five = _count(result.get("cache_creation"), "ephemeral_5m_input_tokens")
                hour = _count(result.get("cache_creation"), "ephemeral_1h_input_tokens")
                found["input_tokens"] += uncached + read + five + hour
                found["cached_input_tokens"] += read
                found["cache_creation_input_tokens"] += five + hour
                found["cache_creation_1h_input_tokens"] += hour
                found["output_tokens"] += _count(result, "output_tokens")
        async for bucket in buckets(http, COSTS_PATH, {**window, "group_by[]": ["workspace_id", "description"]}):
            day = _day(bucket)
            for result in bucket["results"]:
                currency = currency_code(result.get("currency"))
                amount = from_lowest_unit(decimal_amount(result.get("amount")), currency)
                found = rows.row(day, str(result.get("model") or ""), str(result.get("workspace_id") or ""))
                add_cost(found, amount, currency)
        return rows.days()
