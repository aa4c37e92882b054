"""The export streams in keyset pages: every event exactly once across page boundaries, bounded chunks."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from spendstream.common.events import sealed_events
from spendstream.common.prices import bundled
from spendstream.rollup import export
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.queries import UsageQueries
from spendstream.rollup.schema import migrate
from spendstream.rollup.writes import ClickHouseWriter, StoredBatch
from tests.support import Isolation, usage_event

pytestmark = pytest.mark.integration


@pytest.fixture
def filled(iso: Isolation) -> UsageQueries:
    client = clickhouse_client(iso.stack.clickhouse)
    migrate(client, iso.database, 12)
    writer = ClickHouseWriter(client, iso.database, bundled())
    for ws, n in (("ws1", 23), ("ws2", 5)):
        evs = sealed_events([usage_event(tags={"feature": 'f,"quoted"\nline'}) for _ in range(n)])
        batches = [StoredBatch.of(ws, "b", datetime.now(UTC), evs)]
        writer.insert_new(batches, writer.encode(batches))
    return UsageQueries(client, iso.database)


async def test_events_are_paged_by_event_id_without_gaps_or_repeats(filled: UsageQueries) -> None:
    ids = [e["event_id"] async for e in export.events(filled, "ws1", page_rows=4)]
    assert len(ids) == 23 and ids == sorted(set(ids))


async def test_csv_and_json_hold_the_same_records_and_quote_tag_values_safely(filled: UsageQueries) -> None:
    text = b"".join([chunk async for chunk in export.csv_stream(filled, "ws1", page_rows=5)]).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["record_type"] for r in rows] == ["event"] * 23 + ["daily"]
    assert {r["feature"] for r in rows} == {'f,"quoted"\nline'}
    doc = json.loads(b"".join([chunk async for chunk in export.json_stream(filled, "ws1", page_rows=5)]))
    assert [e["event_id"] for e in doc["events"]] == [r["event_id"] for r in rows[:23]]
    assert doc["daily"][0]["requests"] == 23 and doc["workspace_id"] == "ws1"


_STORED = {
    "provider": "openai",
    "model": "gpt-4o",
    "feature": "chat",
    "route": "/v1/chat",
    "task_type": "qa",
    "customer_plan": "pro",
    "customer_id": "c1",
    "cost_source": "computed",
    "input_tokens": 10,
    "output_tokens": 20,
    "cached_input_tokens": 3,
    "reasoning_tokens": 4,
    "cache_creation_input_tokens": 5,
    "cache_creation_1h_input_tokens": 2,
    "service_tier": "flex",
}


def test_an_event_row_becomes_one_record_with_every_column_in_order() -> None:
    row = {
        **_STORED,
        "event_id": "e1",
        "ts": datetime(2026, 3, 1, 12, 30),
        "ingested_at": datetime(2026, 3, 1, 12, 31, tzinfo=UTC),
        "environment": "prod",
        "reservation_id": "rsv_1",
        "price_ref": "table:0",
        "cost_usd": Decimal("0.000125000"),
        "latency_ms": 250,
        "tags": {"team": "a"},
    }
    assert list(export._event(row).items()) == [
        ("record_type", "event"),
        ("event_id", "e1"),
        ("timestamp", "2026-03-01T12:30:00+00:00"),
        ("day", "2026-03-01"),
        ("ingested_at", "2026-03-01T12:31:00+00:00"),
        ("provider", "openai"),
        ("model", "gpt-4o"),
        ("feature", "chat"),
        ("route", "/v1/chat"),
        ("task_type", "qa"),
        ("customer_plan", "pro"),
        ("customer_id", "c1"),
        ("environment", "prod"),
        ("service_tier", "flex"),
        ("reservation_id", "rsv_1"),
        ("cost_source", "computed"),
        ("price_ref", "table:0"),
        ("requests", 1),
        ("input_tokens", 10),
        ("output_tokens", 20),
        ("cached_input_tokens", 3),
        ("reasoning_tokens", 4),
        ("cache_creation_input_tokens", 5),
        ("cache_creation_1h_input_tokens", 2),
        ("cost_usd", "0.000125000"),
        ("latency_ms", 250),
        ("tags", {"team": "a"}),
        *((column, "") for column in export.REVENUE_COLUMNS),
    ]


def test_a_daily_row_becomes_a_record_with_sums_and_no_event_columns() -> None:
    row = {**_STORED, "day": date(2026, 3, 1), "requests": 7, "cost_usd": "1.5", "latency_ms_sum": 900}
    assert list(export._daily(row).items()) == [
        ("record_type", "daily"),
        ("event_id", ""),
        ("timestamp", ""),
        ("day", "2026-03-01"),
        ("ingested_at", ""),
        ("provider", "openai"),
        ("model", "gpt-4o"),
        ("feature", "chat"),
        ("route", "/v1/chat"),
        ("task_type", "qa"),
        ("customer_plan", "pro"),
        ("customer_id", "c1"),
        ("environment", ""),
        ("service_tier", "flex"),
        ("reservation_id", ""),
        ("cost_source", "computed"),
        ("price_ref", ""),
        ("requests", 7),
        ("input_tokens", 10),
        ("output_tokens", 20),
        ("cached_input_tokens", 3),
        ("reasoning_tokens", 4),
        ("cache_creation_input_tokens", 5),
        ("cache_creation_1h_input_tokens", 2),
        ("cost_usd", "1.5"),
        ("latency_ms", 900),
        ("tags", {}),
        *((column, "") for column in export.REVENUE_COLUMNS),
    ]


def test_a_revenue_row_becomes_a_record_with_its_period_and_amount_and_no_usage_columns() -> None:
    row = {
        "source": "stripe",
        "source_id": "in_1",
        "customer_id": "c1",
        "customer_plan": "pro",
        "amount": Decimal("-9.500000000"),
        "currency": "EUR",
        "period_start": date(2026, 3, 1),
        "period_end": date(2026, 3, 31),
    }
    record = export._revenue(row)
    assert list(record) == list(export.COLUMNS)
    assert {k: v for k, v in record.items() if v not in ("", {})} == {
        "record_type": "revenue",
        "day": "2026-03-01",
        "customer_plan": "pro",
        "customer_id": "c1",
        "source": "stripe",
        "source_id": "in_1",
        "amount": "-9.500000000",
        "currency": "EUR",
        "period_start": "2026-03-01",
        "period_end": "2026-03-31",
    }
