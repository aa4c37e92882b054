"""The one-round-trip reads the usage API and the findings use answer exactly as the reads they stand for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from spendstream.common.events import sealed_events
from spendstream.common.prices import bundled
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.queries import UsageQueries
from spendstream.rollup.schema import migrate
from spendstream.rollup.writes import ClickHouseWriter, StoredBatch
from tests.support import Isolation, usage_event

pytestmark = pytest.mark.integration

SETS = (
    ("provider", "model", "feature", "task_type"),
    ("customer_plan", "customer_id"),
    ("provider", "model", "feature", "route"),
)


def _events() -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    events = []
    for i in range(40):
        tags = {"feature": f"f{i % 5}", "customer_id": f"c{i % 7}", "customer_plan": ("free", "team")[i % 2]}
        if i % 3:
            tags["route"] = f"/r{i % 4}"
        if i % 4:
            tags["task_type"] = ("chat", "classification")[i % 2]
        unpriced = i % 6 == 0
        events.append(
            usage_event(
                model="no-such-model" if unpriced else ("gpt-4o", "gpt-4o-mini")[i % 2],
                cost_usd=None if unpriced else round(0.01 * i, 2),
                timestamp=(now - timedelta(days=i % 3)).isoformat(),
                input_tokens=100 + i,
                tags=tags,
            )
        )
    return events


def _queries(iso: Isolation, workspace_id: str) -> UsageQueries:
    client = clickhouse_client(iso.stack.clickhouse)
    migrate(client, iso.database, 12)
    writer = ClickHouseWriter(client, iso.database, bundled())
    batches = [StoredBatch.of(workspace_id, "b1", datetime.now(UTC), sealed_events(_events()))]
    writer.insert_new(batches, writer.encode(batches))
    return UsageQueries(client, iso.database)


def test_group_sets_answer_each_set_as_groups_does_in_one_scan(iso: Isolation) -> None:
    queries = _queries(iso, "wsSets")
    today = datetime.now(UTC).date()
    start = today - timedelta(days=29)
    answers = queries.group_sets("wsSets", start, today, SETS)
    expected = [queries.groups("wsSets", start, today, keys) for keys in SETS]
    assert all(expected)
    assert answers == expected
    assert queries.group_sets("wsNothing", start, today, SETS) == [[], [], []]


def test_context_answers_the_unknown_models_and_the_watermark_together(iso: Isolation) -> None:
    queries = _queries(iso, "wsContext")
    today = datetime.now(UTC).date()
    start = today - timedelta(days=29)
    unknown, watermark = queries.context("wsContext", start, today)
    assert unknown == queries.unknown_models("wsContext", start, today)
    assert [u["model"] for u in unknown] == ["no-such-model"]
    assert watermark is not None
    assert watermark == queries.watermark("wsContext")
    assert queries.context("wsNothing", start, today) == ([], None)
