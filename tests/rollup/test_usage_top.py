"""`GET /v1/usage?top=N`'s query: the N costliest series kept, every other series summed into one row per day whose
`other` is true, the whole answer summing exactly to the answer without `top`."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from spendstream.common.events import sealed_events
from spendstream.common.prices import bundled
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.queries import UsageQueries
from spendstream.rollup.schema import MEASURES, migrate
from spendstream.rollup.writes import ClickHouseWriter, StoredBatch
from tests.support import Stack, new_isolation, usage_event

pytestmark = pytest.mark.integration

WS = "wsTop"
GROUPINGS = (("day", "feature"), ("day", "feature", "customer_id"), ("feature",), ("model", "customer_id"))


def _events() -> list[dict[str, Any]]:
    """Three days of 9 features and 5 customers at uneven costs, and two features of exactly equal cost."""
    now = datetime.now(UTC)
    events = []
    for i in range(90):
        events.append(
            usage_event(
                model=("gpt-4o", "gpt-4o-mini")[i % 2],
                cost_usd=round(0.01 * (i % 13) + 0.001 * (i % 9), 3),
                timestamp=(now - timedelta(days=i % 3)).isoformat(),
                input_tokens=100 + i,
                output_tokens=i,
                tags={"feature": f"f{i % 9}", "customer_id": f"c{i % 5}"},
            )
        )
    for feature in ("tie-b", "tie-a"):  # equal cost, listed out of order
        for day in range(2):
            events.append(
                usage_event(
                    cost_usd=0.5,
                    timestamp=(now - timedelta(days=day)).isoformat(),
                    tags={"feature": feature, "customer_id": "c-tie"},
                )
            )
    return events


@pytest.fixture(scope="module")
def queries(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> UsageQueries:
    """One workspace's events in a database of their own, only read by this module's tests."""
    iso = new_isolation(stack, tmp_path_factory.mktemp("usage-top"))
    client = clickhouse_client(iso.stack.clickhouse)
    migrate(client, iso.database, 12)
    writer = ClickHouseWriter(client, iso.database, bundled())
    batches = [StoredBatch.of(WS, "b1", datetime.now(UTC), sealed_events(_events()))]
    writer.insert_new(batches, writer.encode(batches))
    return UsageQueries(client, iso.database)


def _range() -> tuple[date, date]:
    today = datetime.now(UTC).date()
    return today - timedelta(days=29), today


def _sums(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each measure summed per day ("" without a day column)."""
    out: dict[str, dict[str, Any]] = defaultdict(lambda: {m: 0 for m in MEASURES})
    for row in rows:
        for m in MEASURES:
            out[str(row.get("day", ""))][m] += row[m]
    return dict(out)


def _ranked(rows: list[dict[str, Any]], series: list[str]) -> list[tuple[str, ...]]:
    """The series of a full answer, costliest first, ties by their values."""
    cost: dict[tuple[str, ...], Decimal] = defaultdict(Decimal)
    for row in rows:
        cost[tuple(row[s] for s in series)] += row["cost_usd"]
    return sorted(cost, key=lambda k: (-cost[k], k))


@pytest.mark.parametrize("group_by", GROUPINGS)
@pytest.mark.parametrize("top", [1, 2, 5])
def test_the_kept_series_and_the_rest_sum_to_the_full_answer_per_day(
    queries: UsageQueries, group_by: tuple[str, ...], top: int
) -> None:
    start, end = _range()
    full = queries.usage(WS, start, end, group_by, {})
    rows, other_series = queries.usage_top(WS, start, end, group_by, {}, top)
    series = [g for g in group_by if g != "day"]
    ranked = _ranked(full, series)
    assert len(ranked) > top
    assert other_series == len(ranked) - top
    kept = [r for r in rows if not r["other"]]
    rest = [r for r in rows if r["other"]]
    # The kept rows are the full answer's rows of the N costliest series, unchanged and in the same order.
    assert [{k: v for k, v in r.items() if k != "other"} for r in kept] == [
        r for r in full if tuple(r[s] for s in series) in ranked[:top]
    ]
    # One row of the rest per day (or one in all), its series dimensions null.
    assert rest and all(r[s] is None for r in rest for s in series)
    assert len(rest) == len({r.get("day") for r in rest})
    assert rows[-1]["other"]
    assert _sums(rows) == _sums(full)
    # Each day's rest is exactly the full answer's other series of that day.
    others = [r for r in full if tuple(r[s] for s in series) not in ranked[:top]]
    assert _sums(rest) == _sums(others)


@pytest.mark.parametrize("group_by", GROUPINGS)
def test_as_many_kept_series_as_there_are_answers_the_full_rows(
    queries: UsageQueries, group_by: tuple[str, ...]
) -> None:
    start, end = _range()
    full = queries.usage(WS, start, end, group_by, {})
    count = len(_ranked(full, [g for g in group_by if g != "day"]))
    for top in (count, count + 1, 1000):
        rows, other_series = queries.usage_top(WS, start, end, group_by, {}, top)
        assert other_series == 0
        assert [r["other"] for r in rows] == [False] * len(full)
        assert [{k: v for k, v in r.items() if k != "other"} for r in rows] == full


def test_a_tie_in_cost_keeps_the_smaller_value(queries: UsageQueries) -> None:
    start, end = _range()
    only_ties = {"customer_id": "c-tie"}
    rows, other_series = queries.usage_top(WS, start, end, ["feature"], only_ties, 1)
    assert other_series == 1
    assert [(r["feature"], r["other"], r["cost_usd"]) for r in rows] == [
        ("tie-a", False, Decimal("1.000000000")),
        (None, True, Decimal("1.000000000")),
    ]
    # Every day of a tied series goes the same way.
    by_day, _ = queries.usage_top(WS, start, end, ["day", "feature"], only_ties, 1)
    assert {r["feature"] for r in by_day} == {"tie-a", None}
    assert sum(1 for r in by_day if r["feature"] == "tie-a") == 2


def test_filters_apply_before_the_ranking(queries: UsageQueries) -> None:
    start, end = _range()
    filters = {"customer_id": ["c1", "c3"], "model": "gpt-4o"}
    full = queries.usage(WS, start, end, ["day", "feature"], filters)
    everything = queries.usage(WS, start, end, ["day", "feature"], {})
    assert 0 < sum(r["requests"] for r in full) < sum(r["requests"] for r in everything)
    rows, other_series = queries.usage_top(WS, start, end, ["day", "feature"], filters, 2)
    ranked = _ranked(full, ["feature"])
    assert other_series == len(ranked) - 2
    assert {r["feature"] for r in rows if not r["other"]} == set(k[0] for k in ranked[:2])
    assert _sums(rows) == _sums(full)


def test_without_a_series_dimension_the_rows_are_the_full_answers(queries: UsageQueries) -> None:
    start, end = _range()
    for group_by in ((), ("day",)):
        rows, other_series = queries.usage_top(WS, start, end, group_by, {}, 1)
        assert other_series == 0
        assert rows == [{**r, "other": False} for r in queries.usage(WS, start, end, group_by, {})]
    assert queries.usage_top("wsNothing", start, end, ["feature"], {}, 3) == ([], 0)


@pytest.mark.parametrize("top", [1, 3, 1000])
def test_several_groupings_in_one_scan_answer_each_as_one_grouping_does(queries: UsageQueries, top: int) -> None:
    start, end = _range()
    sets = [("model",), ("feature",), ("customer_id",), ("day", "model"), ("day",), ("day", "feature", "customer_id")]
    for filters in ({}, {"customer_id": ["c1", "c3", "c-tie"]}):
        answers = queries.usage_sets(WS, start, end, sets, filters, top)
        expected = [queries.usage_top(WS, start, end, keys, filters, top) for keys in sets]
        assert any(other for _, other in expected) or top == 1000
        assert answers == expected
    assert queries.usage_sets("wsNothing", start, end, sets, {}, top) == [([], 0)] * len(sets)
