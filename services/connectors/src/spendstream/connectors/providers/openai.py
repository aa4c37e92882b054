"""OpenAI's organization Usage and Costs APIs (an Admin key, `Authorization: Bearer`).

`GET /v1/organization/usage/completions` (daily buckets, grouped by model and project) gives tokens and
requests: `input_tokens` counts cached input too, `input_cached_tokens` the cache reads. `GET
/v1/organization/costs` (daily buckets, grouped by project and line item) gives the bill; a line item reads
"<model>, <input|output|...>", so its model is the part before the first comma. `amount.value` is a number in
the currency's major unit (dollars), which is what a row's cost holds (money.py).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from spendstream.connectors.providers import Days, Rows
from spendstream.connectors.providers.money import add_cost, currency_code, decimal_amount
from spendstream.connectors.providers.paging import MalformedReport, buckets
from spendstream.connectors.readonly_http import ReadOnlyHttp

USAGE_PATH = "/v1/organization/usage/completions"
COSTS_PATH = "/v1/organization/costs"


def _unix(day: date) -> int:
    return int(datetime.combine(day, time(), UTC).timestamp())


def _day(bucket: Any) -> date:
    start = bucket.get("start_time")
    if not isinstance(start, int):
        raise MalformedReport("bucket_without_start_time")
    return datetime.fromtimestamp(start, UTC).date()


def _count(result: Any, name: str) -> int:
    value = result.get(name) or 0
    if not isinstance(value, int) or value < 0:
        raise MalformedReport(f"invalid_{name}")
    return value


class OpenAIReader:
    def headers(self, admin_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {admin_key}"}

    async def read(self, http: ReadOnlyHttp, start: date, end: date) -> Days:
        window: dict[str, str | int | list[str]] = {
            "start_time": _unix(start),
            "end_time": _unix(end),
            "bucket_width": "1d",
            "limit": 31,
        }
        rows = Rows({"input_tokens": 0, "cached_input_tokens": 0, "output_tokens": 0, "requests": 0})

        async for bucket in buckets(http, USAGE_PATH, {**window, "group_by": ["model", "project_id"]}):
            day = _day(bucket)
            for result in bucket["results"]:
                found = rows.row(day, str(result.get("model") or ""), str(result.get("project_id") or ""))
                found["input_tokens"] += _count(result, "input_tokens")
                found["cached_input_tokens"] += _count(result, "input_cached_tokens")
                found["output_tokens"] += _count(result, "output_tokens")
                found["requests"] += _count(result, "num_model_requests")
        async for bucket in buckets(http, COSTS_PATH, {**window, "group_by": ["project_id", "line_item"]}):
            day = _day(bucket)
            for result in bucket["results"]:
                amount = result.get("amount")
                if not isinstance(amount, dict) or isinstance(amount.get("value"), str):
                    raise MalformedReport("invalid_amount")  # documented as a number
                value = decimal_amount(amount.get("value"))
                model = str(result.get("line_item") or "").split(",", 1)[0].strip()
                found = rows.row(day, model, str(result.get("project_id") or ""))
                add_cost(found, value, currency_code(amount.get("currency")))
        return rows.days()
