"""rollup's schema: numbered migrations applied once, idempotently, and TTLs following the retention setting."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from spendstream.common.events import sealed_events
from spendstream.common.prices import bundled
from spendstream.rollup import schema
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.queries import UsageQueries
from spendstream.rollup.reconcile import Reconciler
from spendstream.rollup.schema import SCHEMA_VERSION, applied_versions, migrate
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

    insert("old")
    monkeypatch.setattr(schema, "migrations", full)
    assert migrate(client, iso.database, 12) == [7]
    # As if the process died after version 7's statements but before recording it: they run again.
    client.command(f"DELETE FROM {iso.database}.schema_migrations WHERE version = 7")
    assert migrate(client, iso.database, 12) == [7]
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
