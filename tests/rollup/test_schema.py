"""rollup's schema: numbered migrations applied once, idempotently, and TTLs following the retention setting."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from spendstream.common.events import sealed_events
from spendstream.common.prices import bundled
from spendstream.rollup import schema
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.queries import UsageQueries
from spendstream.rollup.reconcile import Reconciler
from spendstream.rollup.schema import BATCH_COLUMNS, SCHEMA_VERSION, applied_versions, migrate
from spendstream.rollup.writes import ClickHouseWriter, StoredBatch
from tests.support import Isolation, usage_event

pytestmark = pytest.mark.integration


def _engines(iso: Isolation) -> dict[str, str]:
    rows = (
        clickhouse_client(iso.stack.clickhouse)
        .query(
            "SELECT name, engine_full FROM system.tables WHERE database = {db:String}", parameters={"db": iso.database}
        )
        .result_rows
    )
    return {str(n): str(e) for n, e in rows}


def test_migrations_apply_once_and_a_rerun_changes_nothing(iso: Isolation) -> None:
    client = clickhouse_client(iso.stack.clickhouse)
    assert migrate(client, iso.database, 12) == list(range(1, SCHEMA_VERSION + 1))
    assert migrate(client, iso.database, 12) == []
    assert applied_versions(client, iso.database) == set(range(1, SCHEMA_VERSION + 1))
    rows = client.query(f"SELECT count() FROM {iso.database}.schema_migrations").result_rows
    assert rows[0][0] == SCHEMA_VERSION
    engines = _engines(iso)
    assert {
        "usage_events",
        "usage_daily",
        "usage_daily_mv",
        "workspace_watermarks",
        "workspace_watermarks_mv",
        "usage_batches_in",
        "usage_batches_in_mv",
        "erasure_log",
        "erased_subjects",
        "schema_migrations",
    } <= set(engines)
    # One way in: the entry table stores nothing, its view spreads each block into usage_events.
    assert engines["usage_batches_in"].strip("`") == "Null"
    assert not {"usage_events_in", "usage_events_in_mv"} & set(engines)


def test_a_half_applied_migration_is_completed_on_the_next_start(iso: Isolation) -> None:
    client = clickhouse_client(iso.stack.clickhouse)
    migrate(client, iso.database, 12)
    # As if the process died after version 2's statements but before recording it.
    client.command(f"DELETE FROM {iso.database}.schema_migrations WHERE version = 2")
    assert migrate(client, iso.database, 12) == [2]
    assert applied_versions(client, iso.database) == set(range(1, SCHEMA_VERSION + 1))


def test_ttls_follow_the_retention_setting(iso: Isolation) -> None:
    client = clickhouse_client(iso.stack.clickhouse)
    migrate(client, iso.database, 12)
    assert all(
        "toIntervalMonth(12)" in e
        for n, e in _engines(iso).items()
        if n in ("usage_events", "usage_daily", "workspace_watermarks")
    )
    migrate(client, iso.database, 13)
    engines = _engines(iso)
    assert "TTL toDateTime(ingested_at) + toIntervalMonth(13)" in engines["usage_events"]
    assert "TTL day + toIntervalMonth(13)" in engines["usage_daily"]
    assert "toIntervalMonth(13)" in engines["workspace_watermarks"]


def test_tables_of_version_6_on_disk_gain_the_cache_writes_and_service_tier_and_keep_their_rows(
    iso: Isolation, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = clickhouse_client(iso.stack.clickhouse)
    full = schema.migrations
    monkeypatch.setattr(schema, "migrations", lambda db, months: {v: s for v, s in full(db, months).items() if v <= 6})
    assert migrate(client, iso.database, 12) == [1, 2, 3, 4, 5, 6]
    writer = ClickHouseWriter(client, iso.database, bundled())

    def insert(batch_id: str, **fields: object) -> None:
        events = sealed_events([usage_event(event_id=f"{batch_id}-{i}", cost_usd=0.5, **fields) for i in range(2)])
        batch = StoredBatch.of("ws1", batch_id, datetime.now(UTC), events)
        writer.insert_new([batch], writer.encode([batch]))

    # What a rollup of version 6 inserted: the entry table's columns of then (no price refs).
    events = sealed_events([usage_event(event_id=f"old-{i}", cost_usd=0.5) for i in range(2)])
    line = json.loads(writer.encode([StoredBatch.of("ws1", "old", datetime.now(UTC), events)]))
    client.raw_insert(
        f"{iso.database}.usage_batches_in",
        BATCH_COLUMNS[:5],
        json.dumps(line[:5]),
        fmt="JSONCompactEachRow",
        settings={"date_time_input_format": "best_effort"},
    )
    monkeypatch.setattr(schema, "migrations", full)
    assert migrate(client, iso.database, 12) == [7, 8, 9]
    # As if the process died after version 7's statements but before recording it: they run again, and so does 8.
    client.command(f"DELETE FROM {iso.database}.schema_migrations WHERE version IN (7, 8)")
    assert migrate(client, iso.database, 12) == [7, 8]
    insert("new", cache_creation_input_tokens=300, cache_creation_1h_input_tokens=100, service_tier="batch")
    today = datetime.now(UTC).date()
    rows = UsageQueries(client, iso.database).usage("ws1", today, today, ["service_tier"], {})
    assert [(r["service_tier"], r["requests"], r["cache_creation_input_tokens"]) for r in rows] == [
        ("", 2, 0),
        ("batch", 2, 600),
    ]
    assert rows[1]["cache_creation_1h_input_tokens"] == 200
    sort_key = client.query(
        "SELECT sorting_key FROM system.tables WHERE database = {db:String} AND name = 'usage_daily'",
        parameters={"db": iso.database},
    ).result_rows[0][0]
    assert str(sort_key).endswith("cost_source, service_tier")
    assert Reconciler(client, iso.database).reconcile(today, today) == 0  # the views and the raw table agree


def test_version_8_stores_each_cost_s_source_and_still_takes_an_insert_without_sources(iso: Isolation) -> None:
    client = clickhouse_client(iso.stack.clickhouse)
    migrate(client, iso.database, 12)
    client.command(f"DELETE FROM {iso.database}.schema_migrations WHERE version = 8")
    assert migrate(client, iso.database, 12) == [8]  # a rerun of its statements is harmless
    event = {
        "event_id": "e1", "provider": "openai", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 1,
        "cached_input_tokens": None, "reasoning_tokens": None, "latency_ms": 1, "cost_usd": None,
        "timestamp": "2026-03-01 00:00:00.000", "tags": {},
    }  # fmt: skip
    reported = {**event, "event_id": "e2", "cost_usd": "0.5"}
    with_refs = json.dumps(["ws", "b1", "2026-03-01 00:00:00.000", [event, reported], ["0.1", None], ["table:0", ""]])
    client.raw_insert(f"{iso.database}.usage_batches_in", BATCH_COLUMNS, with_refs, fmt="JSONCompactEachRow")
    # A rollup of the previous version, mid-upgrade, inserts no sources: its events store ''.
    older = {**event, "event_id": "e3"}
    without = json.dumps(["ws", "b2", "2026-03-01 00:00:00.000", [older], ["0.2"]])
    client.raw_insert(f"{iso.database}.usage_batches_in", BATCH_COLUMNS[:5], without, fmt="JSONCompactEachRow")
    rows = client.query(
        f"SELECT event_id, toString(cost_usd), toString(cost_source), price_ref FROM {iso.database}.usage_events "
        "ORDER BY event_id"
    ).result_rows
    assert [tuple(r) for r in rows] == [
        ("e1", "0.1", "computed", "table:0"),
        ("e2", "0.5", "reported", ""),
        ("e3", "0.2", "computed", ""),
    ]
