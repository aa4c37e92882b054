"""Export of one workspace's data (data portability): every stored event, every daily rollup row, then every
revenue record (corrections applied).

Streamed: events are read in keyset pages of PAGE_ROWS (ordered by event_id, the table's sort key) and rollups
one day at a time, each page in a worker thread (the chDB client is synchronous), so memory stays bounded by
one page whatever the workspace's size. CSV has one header and a `record_type` column (`event`, `daily` or
`revenue`); for a daily row `requests` and `latency_ms` are sums; a revenue row fills customer_id, customer_plan,
day (its period's start) and the revenue columns. JSON is one document, one record per line:
`{"workspace_id": …, "exported_at": …, "events": [...], "daily": [...], "revenue": [...]}`.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from spendstream.rollup.queries import UsageQueries

Format = Literal["csv", "json"]
PAGE_ROWS = 5000
CHUNK_BYTES = 64 * 1024
REVENUE_COLUMNS = ("source", "source_id", "amount", "currency", "period_start", "period_end")
COLUMNS = (
    "record_type",
    "event_id",
    "timestamp",
    "day",
    "ingested_at",
    "provider",
    "model",
    "feature",
    "route",
    "task_type",
    "customer_plan",
    "customer_id",
    "environment",
    "service_tier",
    "reservation_id",
    "cost_source",
    "price_ref",
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "cost_usd",
    "latency_ms",
    "tags",
    *REVENUE_COLUMNS,
)


def _utc(value: datetime) -> str:
    # chDB may hand back DateTime64 without its zone; the columns are UTC by definition.
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()


def _record(row: dict[str, Any], **own: Any) -> dict[str, Any]:
    """A record in COLUMNS order: the values in `own`, every other column copied from the row as stored."""
    return {column: own[column] if column in own else row.get(column, "") for column in COLUMNS}


def _event(row: dict[str, Any]) -> dict[str, Any]:
    return _record(
        row,
        record_type="event",
        timestamp=_utc(row["ts"]),
        day=_utc(row["ts"])[:10],
        ingested_at=_utc(row["ingested_at"]),
        requests=1,
        cost_usd=format(row["cost_usd"], "f"),
        tags=dict(row["tags"]),
    )


def _daily(row: dict[str, Any]) -> dict[str, Any]:
    day: date = row["day"]
    # A daily row has no single event: its event columns are empty, its environment and reservations summed away.
    return _record(
        row,
        record_type="daily",
        event_id="",
        timestamp="",
        day=day.isoformat(),
        ingested_at="",
        environment="",
        reservation_id="",
        price_ref="",
        cost_usd=format(Decimal(row["cost_usd"]), "f"),
        latency_ms=row["latency_ms_sum"],
        tags={},
    )


def _revenue(row: dict[str, Any]) -> dict[str, Any]:
    start: date = row["period_start"]
    end: date = row["period_end"]
    return _record(
        row,
        record_type="revenue",
        day=start.isoformat(),
        amount=format(Decimal(row["amount"]), "f"),
        period_start=start.isoformat(),
        period_end=end.isoformat(),
        tags={},
    )


async def revenue(queries: UsageQueries, workspace_id: str) -> AsyncIterator[dict[str, Any]]:
    for row in await asyncio.to_thread(queries.revenue_rows, workspace_id):
        yield _revenue(row)


async def events(queries: UsageQueries, workspace_id: str, page_rows: int = PAGE_ROWS) -> AsyncIterator[dict[str, Any]]:
    after = ""
    while True:
        page = await asyncio.to_thread(queries.events_page, workspace_id, after, page_rows)
        for row in page:
            yield _event(row)
        if len(page) < page_rows:
            return
        after = page[-1]["event_id"]


async def daily(queries: UsageQueries, workspace_id: str) -> AsyncIterator[dict[str, Any]]:
    for day in await asyncio.to_thread(queries.daily_days, workspace_id):
        for row in await asyncio.to_thread(queries.daily_rows, workspace_id, day):
            yield _daily(row)


async def csv_stream(queries: UsageQueries, workspace_id: str, page_rows: int = PAGE_ROWS) -> AsyncIterator[bytes]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for source in (
        events(queries, workspace_id, page_rows),
        daily(queries, workspace_id),
        revenue(queries, workspace_id),
    ):
        async for record in source:
            writer.writerow({**record, "tags": json.dumps(record["tags"], sort_keys=True) if record["tags"] else ""})
            if buffer.tell() >= CHUNK_BYTES:
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue().encode()


async def json_stream(queries: UsageQueries, workspace_id: str, page_rows: int = PAGE_ROWS) -> AsyncIterator[bytes]:
    head = {"workspace_id": workspace_id, "exported_at": datetime.now(UTC).isoformat()}
    parts: list[str] = [json.dumps(head)[:-1] + ', "events": [']
    size = 0
    sources = (
        ("events", events(queries, workspace_id, page_rows)),
        ("daily", daily(queries, workspace_id)),
        ("revenue", revenue(queries, workspace_id)),
    )
    for name, source in sources:
        if name != "events":
            parts.append(f'\n], "{name}": [')
        first = True
        async for record in source:
            line = ("\n" if first else ",\n") + json.dumps(record)
            first = False
            parts.append(line)
            size += len(line)
            if size >= CHUNK_BYTES:
                yield "".join(parts).encode()
                parts, size = [], 0
    parts.append("\n]}\n")
    yield "".join(parts).encode()


def stream(queries: UsageQueries, workspace_id: str, fmt: Format) -> AsyncIterator[bytes]:
    return csv_stream(queries, workspace_id) if fmt == "csv" else json_stream(queries, workspace_id)
