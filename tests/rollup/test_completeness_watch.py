"""The completeness watch on a real ClickHouse database with a moved clock: events in flight never alert; a
difference still there after the grace alerts once; a rollup difference alerts only once seen for the grace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from spendstream.common.records import DataAlert, IngestTally
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.completeness import CompletenessWatch
from spendstream.rollup.ledger import Ledger
from spendstream.rollup.schema import migrate
from tests.support import Isolation

pytestmark = pytest.mark.integration

GRACE = 600.0


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def _watch(iso: Isolation, clock: Clock, raised: list[DataAlert]) -> CompletenessWatch:
    client = clickhouse_client(iso.stack.clickhouse)
    migrate(client, iso.database, 12)

    async def publish(alert: DataAlert) -> None:
        raised.append(alert)

    clock.now = datetime.now(UTC)  # after the migration: the ledger counts what was ingested since
    return CompletenessWatch(
        client=client,
        database=iso.database,
        ledger=Ledger(client, iso.database),
        publish=publish,
        grace_seconds=GRACE,
        days=3,
        now=clock,
    )


async def test_a_tally_without_its_events_alerts_only_once_the_grace_has_passed_and_then_once(iso: Isolation) -> None:
    clock, raised = Clock(), list[DataAlert]()
    watch = _watch(iso, clock, raised)
    today = clock.now.date()
    tally = IngestTally(workspace_id="ws_a", batch_id="b1", days={today: 3}, at=clock.now)
    Ledger(clickhouse_client(iso.stack.clickhouse), iso.database).record_tallies([tally])

    assert await watch.check() == []  # in flight: rollup may not have read it yet
    clock.now += timedelta(seconds=GRACE + 1)
    assert await watch.check() == [("ws_a", today, "topic", 3)]
    assert await watch.check() == [("ws_a", today, "topic", 3)]  # still there, raised once
    assert [(a.kind, a.workspace_id, a.day, a.stage, a.gap_events) for a in raised] == [
        ("completeness_gap", "ws_a", today.isoformat(), "topic", 3)
    ]


async def test_a_rollup_difference_alerts_once_seen_for_the_whole_grace(iso: Isolation) -> None:
    clock, raised = Clock(), list[DataAlert]()
    watch = _watch(iso, clock, raised)
    today = clock.now.date()
    clickhouse_client(iso.stack.clickhouse).command(
        f"INSERT INTO {iso.database}.usage_daily (workspace_id, day, model, cost_source, requests) "
        "VALUES ('ws_b', {day:Date}, 'm', 'reported', 2)",
        parameters={"day": today},
    )
    assert await watch.check() == []
    clock.now += timedelta(seconds=GRACE / 2)
    assert await watch.check() == []
    clock.now += timedelta(seconds=GRACE / 2)
    assert await watch.check() == [("ws_b", today, "rollup", -2)]
    assert [(a.stage, a.gap_events) for a in raised] == [("rollup", -2)]
