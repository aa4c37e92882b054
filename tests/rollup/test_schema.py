"""rollup's schema: numbered migrations applied once, idempotently, and TTLs following the retention setting."""

from __future__ import annotations

import pytest

from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.schema import applied_versions, migrate, migrations
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
    # Numbers may be reserved by work not merged yet: the versions are the declared ones, in order.
    versions = sorted(migrations(iso.database, 12))
    assert migrate(client, iso.database, 12) == versions
    assert migrate(client, iso.database, 12) == []
    assert applied_versions(client, iso.database) == set(versions)
    rows = client.query(f"SELECT count() FROM {iso.database}.schema_migrations").result_rows
    assert rows[0][0] == len(versions)
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
    assert applied_versions(client, iso.database) == set(migrations(iso.database, 12))


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
