"""The ledger's rows of what rollup read, decided without a store: each event once, on the envelope that
carried it first; a redelivery writes the same rows; an event in two envelopes leaves a row per carrier."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

from spendstream.common.events import sealed_events
from spendstream.rollup.ledger import DayLedger, read_rows
from spendstream.rollup.writes import StoredBatch
from tests.support import usage_event

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DAY, BEFORE = NOW.date(), NOW.date() - timedelta(days=1)


def _batch(batch_id: str, ids: str, at: datetime = NOW, workspace_id: str = "w") -> StoredBatch:
    events = sealed_events([usage_event(event_id=i, timestamp=at.isoformat()) for i in ids.split()])
    return StoredBatch.of(workspace_id, batch_id, NOW, events)


def test_new_envelopes_count_their_events_per_day() -> None:
    reads, repeats = read_rows([_batch("A", "a b"), _batch("B", "c", at=NOW - timedelta(days=1))], {})
    assert reads == [("w", DAY, "A", NOW, 2, 0), ("w", BEFORE, "B", NOW, 1, 0)]
    assert repeats == []


def test_a_redelivered_envelope_writes_the_same_rows_again() -> None:
    first, _ = read_rows([_batch("A", "a b")], {})
    again, repeats = read_rows([_batch("A", "a b")], {("w", "a"): "A", ("w", "b"): "A"})
    assert again == first and repeats == []


def test_an_event_two_envelopes_carry_counts_on_the_first_and_leaves_a_row_per_carrier() -> None:
    stored = {("w", "a"): "A"}
    reads, repeats = read_rows([_batch("B", "a c"), _batch("C", "c")], stored)
    assert reads == [("w", DAY, "B", NOW, 1, 0)]
    assert sorted(repeats) == sorted(
        [("w", DAY, "a", "B", NOW), ("w", DAY, "a", "A", NOW), ("w", DAY, "c", "C", NOW), ("w", DAY, "c", "B", NOW)]
    )


def test_the_same_id_in_two_workspaces_is_two_events() -> None:
    reads, repeats = read_rows([_batch("A", "a"), _batch("B", "a", workspace_id="v")], {})
    assert [(r[0], r[4]) for r in reads] == [("w", 1), ("v", 1)] and repeats == []


def test_erased_customers_events_left_out_are_read_but_dropped() -> None:
    batch = dataclasses.replace(_batch("A", "a"), dropped=((DAY, 2), (BEFORE, 1)))
    reads, _ = read_rows([batch], {})
    assert reads == [("w", BEFORE, "A", NOW, 0, 1), ("w", DAY, "A", NOW, 1, 2)]


def test_each_difference_is_a_stage_that_lost_or_gained_events() -> None:
    exact = DayLedger(date(2026, 11, 23), accepted=10, on_topic=9, dead_lettered=1, erased=2, stored_raw=7, in_rollup=7)
    assert exact.gaps() == {"topic": 0, "raw": 0, "rollup": 0}
    lost = dataclasses.replace(exact, stored_raw=6, in_rollup=7)
    assert lost.gaps() == {"topic": 0, "raw": 1, "rollup": -1}
