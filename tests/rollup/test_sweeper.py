"""The sweeper: rows past their TTL removed physically, by the injected clock, now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.schema import EVENT_COLUMNS, migrate
from spendstream.rollup.sweeper import Sweeper
from tests.retention.pipeline import raw_count
from tests.support import Isolation

pytestmark = [pytest.mark.integration]


def test_sweeper_drops_what_the_ttl_has_not_yet_removed_by_the_injected_clock(iso: Isolation) -> None:
    client = clickhouse_client(iso.stack.clickhouse)
    migrate(client, iso.database, 12)
    # ClickHouse drops rows already expired *at insert* by its own clock, so the rows are recent and the
    # injected clock is moved forward instead.
    real = datetime.now(UTC)
    old, young = real - timedelta(days=200), real - timedelta(days=30)
    now = real + timedelta(days=200)
    columns = EVENT_COLUMNS

    def row(event_id: str, at: datetime) -> tuple[Any, ...]:
        return (
            "ws_sweep",
            event_id,
            at,
            at,
            "b",
            "openai",
            "m",
            1,
            1,
            0,
            0,
            1,
            0.5,
            "reported",
            "f",
            "",
            "",
            "",
            "c",
            "",
            {},
            0,
            0,
            "",
            "",
            "",
        )

    client.insert(
        f"{iso.database}.usage_events", [row("old1", old), row("old2", old), row("young", young)], column_names=columns
    )
    # TTL would remove the old rows only when ClickHouse merges, by its own clock; the sweeper does it now.
    sweeper = Sweeper(client, iso.database)
    counts = {c.store: (c.before, c.after) for c in sweeper.sweep(now)}
    assert counts["clickhouse:usage_events"] == (2, 0)
    assert counts["clickhouse:usage_daily"] == (1, 0)
    assert raw_count(iso, "usage_events", "1", {}) == 1
    assert raw_count(iso, "usage_daily", "1", {}) == 1
    # A clock another 13 months on expires the rest; a second sweep at the same time finds nothing.
    later = now + timedelta(days=200)
    assert {c.store: c.before for c in sweeper.sweep(later)}["clickhouse:usage_events"] == 1
    assert all(c.before == 0 for c in sweeper.sweep(later))
    assert raw_count(iso, "usage_events", "1", {}) == 0
