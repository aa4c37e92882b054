"""rollup's schema: numbered migrations applied once, idempotently, and TTLs following the retention setting."""

from __future__ import annotations

import json

import pytest

from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.schema import BATCH_COLUMNS, SCHEMA_VERSION, applied_versions, migrate
from tests.support import Isolation

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
