"""The export streams in keyset pages: every event exactly once across page boundaries, bounded chunks."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

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
