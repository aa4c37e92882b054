"""SpendTracker's decisions over whole Kafka batches, in memory (no Redis, no Kafka): a redelivered or replayed
record counts nothing twice, an unreadable record is skipped and the rest counted, a threshold fires once per
(budget, period, threshold), and a batch whose publish failed fires on its redelivery what it missed.

The records are real sealed envelopes; the keys come from a dict instead of the replayed data-keys topic, the
counters and markers from the in-memory stand-in (held to Redis' semantics by test_spend and test_thresholds).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from prometheus_client import REGISTRY

from spendstream.alerts import metrics
from spendstream.alerts.consumer import SpendTracker
from spendstream.alerts.keyspace import ALL
from spendstream.alerts.periods import month_end
from spendstream.common.envelope import seal
from spendstream.common.events import EncodedBatch, SealedBatch, SealedEvent
from spendstream.common.key_backoff import KeyBackoff
from spendstream.common.records import BudgetRecord
from spendstream.common.tenants import KeyRing, KeyUnavailable
from tests.alerts.helpers import Rig, budget, event, rig

# Kept five minutes clear of the month's end: a lease is taken over 31 s later, in the same month.
NOW = min(datetime.now(UTC), month_end(datetime.now(UTC)) - timedelta(minutes=5))
MONTH = NOW.strftime("%Y-%m")
TOPIC = "usage.events.v1"


class DictKeyRing(KeyRing):
    """Data keys (version 1) from a dict instead of the replayed topic; a workspace missing is shredded, one in
    `foreign` was wrapped by another KEK (KeyUnavailable, as the real ring raises it)."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        self.keys = keys
        self.foreign: set[str] = set()

    async def data_key(self, workspace_id: str, version: int) -> bytes | None:
        if workspace_id in self.foreign:
            raise KeyUnavailable(workspace_id, "kek-other")
        return self.keys.get(workspace_id) if version == 1 else None


@dataclass(frozen=True)
class Record:
    """What SpendTracker reads of an aiokafka ConsumerRecord."""

    topic: str
    partition: int
    offset: int
    value: bytes | None


@dataclass
class Book:
    budgets: list[BudgetRecord] = field(default_factory=list)

    def of_workspace(self, workspace_id: str) -> list[BudgetRecord]:
        return [b for b in self.budgets if b.workspace_id == workspace_id]


@dataclass
class Tracker:
    rig: Rig
    tracker: SpendTracker
    keyring: DictKeyRing
    book: Book

    def record(self, workspace_id: str, offset: int, *events: SealedEvent, partition: int = 0) -> Record:
        envelope = seal(
            EncodedBatch(msgspec.json.encode(SealedBatch(list(events))), len(events)),
            workspace_id=workspace_id,
            batch_id=uuid.uuid4().hex,
            key=self.keyring.keys[workspace_id],
            key_version=1,
            ingested_at=NOW,
        )
        return Record(TOPIC, partition, offset, envelope.model_dump_json().encode())

    async def spent(self, workspace_id: str) -> int:
        return await self.rig.counter.month_to_date(workspace_id, MONTH, ALL)

    def fired(self) -> list[tuple[str, int | None]]:
        return [(a.budget_id, a.threshold_pct) for a in self.rig.published]


@asynccontextmanager
async def tracking(*budgets: BudgetRecord) -> AsyncIterator[Tracker]:
    async with rig(None) as r:
        keyring = DictKeyRing({"ws1": os.urandom(32), "ws2": os.urandom(32)})
        book = Book(list(budgets))
        backoff = KeyBackoff("alerts", first_delay=0.0)
        tracker = SpendTracker(keyring, r.counter, r.evaluator, book, lambda: NOW, key_backoff=backoff)
        yield Tracker(r, tracker, keyring, book)


async def test_a_data_key_another_kek_wrapped_is_not_skipped_the_batch_waits_and_comes_again() -> None:
    """Skipping it would leave its spend uncounted for good; once the right KEK unwraps it, it counts."""
    before = REGISTRY.get_sample_value("spendstream_key_unavailable_total", {"consumer": "alerts"}) or 0.0
    async with tracking() as t:
        batch = [t.record("ws1", 1, event("1", NOW)), t.record("ws2", 1, event("2", NOW))]
        t.keyring.foreign.add("ws2")
        with pytest.raises(KeyUnavailable):
            await t.tracker.handle(batch)
        assert await t.spent("ws2") == 0
        assert REGISTRY.get_sample_value("spendstream_key_unavailable_total", {"consumer": "alerts"}) == before + 1
        t.keyring.foreign.clear()  # the right KEK
        await t.tracker.handle(batch)
        assert (await t.spent("ws1"), await t.spent("ws2")) == (1_000_000_000, 2_000_000_000)


async def test_a_redelivered_batch_counts_nothing_twice_and_fires_nothing_again() -> None:
    b = budget(thresholds=(50, 100))
    async with tracking(b) as t:
        batch = [t.record("ws1", 10, event("30", NOW)), t.record("ws1", 11, event("30", NOW))]
        await t.tracker.handle(batch)
        await t.tracker.handle(batch)
        assert await t.spent("ws1") == 60_000_000_000
        assert t.fired() == [(b.budget_id, 50)]


async def test_a_replay_from_an_earlier_offset_counts_only_the_records_not_counted() -> None:
    async with tracking() as t:
        first = [t.record("ws1", 10, event("1", NOW)), t.record("ws1", 11, event("2", NOW))]
        await t.tracker.handle(first)
        await t.tracker.handle([*first, t.record("ws1", 12, event("4", NOW))])
        assert await t.spent("ws1") == 7_000_000_000


async def test_partitions_and_workspaces_keep_their_own_marks() -> None:
    async with tracking() as t:
        await t.tracker.handle(
            [
                t.record("ws1", 5, event("1", NOW), partition=0),
                t.record("ws1", 5, event("2", NOW), partition=1),
                t.record("ws2", 5, event("4", NOW), partition=0),
            ]
        )
        assert (await t.spent("ws1"), await t.spent("ws2")) == (3_000_000_000, 4_000_000_000)


@pytest.mark.parametrize(
    ("broken", "reason"),
    [
        ("not json", "unparsable_envelope"),
        ("no value", "unparsable_envelope"),
        ("shredded key", "no_data_key"),
        ("another key", "undecryptable"),
    ],
)
async def test_an_unreadable_record_is_skipped_and_the_rest_of_the_batch_counted(broken: str, reason: str) -> None:
    unreadable = metrics.RECORDS_UNREADABLE.labels(reason)
    before = unreadable._value.get()
    async with tracking() as t:
        bad = t.record("ws2", 7, event("100", NOW))
        if broken == "not json":
            bad = Record(TOPIC, 0, 7, b"{not json")
        elif broken == "no value":
            bad = Record(TOPIC, 0, 7, None)
        elif broken == "shredded key":
            del t.keyring.keys["ws2"]
        else:
            t.keyring.keys["ws2"] = os.urandom(32)
        await t.tracker.handle([t.record("ws1", 6, event("1", NOW)), bad, t.record("ws1", 8, event("2", NOW))])
        assert await t.spent("ws1") == 3_000_000_000
        assert await t.spent("ws2") == 0
        assert unreadable._value.get() == before + 1


async def test_each_threshold_fires_once_per_budget_across_batches() -> None:
    small, large = budget(thresholds=(50, 100)), budget(amount="1000", thresholds=(10,))
    other = budget(workspace_id="ws2", thresholds=(1,))
    async with tracking(small, large, other) as t:
        await t.tracker.handle([t.record("ws1", 1, event("60", NOW))])
        await t.tracker.handle([t.record("ws1", 2, event("10", NOW))])
        assert t.fired() == [(small.budget_id, 50)]
        await t.tracker.handle([t.record("ws1", 3, event("45", NOW))])  # 115: 100 % of small, 10 % of large
        assert t.fired() == [(small.budget_id, 50), (small.budget_id, 100), (large.budget_id, 10)]
        await t.tracker.handle([t.record("ws1", 4, event("500", NOW))])
        assert len(t.fired()) == 3  # nothing left to cross; ws2 has spent nothing


async def test_a_batch_whose_publish_failed_fires_on_redelivery_and_counts_once() -> None:
    b = budget(thresholds=(50,))
    async with tracking(b) as t:
        batch = [t.record("ws1", 1, event("60", NOW))]
        t.rig.fail_next_publish = True
        with pytest.raises(ConnectionError):  # FastStream seeks back (NACK_ON_ERROR): the batch comes again
            await t.tracker.handle(batch)
        assert t.fired() == []
        # The claim of the failed attempt is a lease: the sweep takes it over once it lapses. Until then, the
        # redelivered batch fires nothing and counts nothing again.
        await t.tracker.handle(batch)
        assert (t.fired(), await t.spent("ws1")) == ([], 60_000_000_000)
        [alert] = await t.rig.evaluator.evaluate(b, datetime.fromtimestamp(NOW.timestamp() + 31, UTC))
        assert alert.threshold_pct == 50
        assert t.fired() == [(b.budget_id, 50)]
