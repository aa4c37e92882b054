"""BatchWriter's decisions in memory (no Kafka, no ClickHouse): duplicates, redelivery, a failing store, poison,
erased customers. The store, the key ring and the broker are fakes (tests/rollup/fakes.py); the records are sealed
as ingest seals them and read by the real decoder. The same guarantees against the real engine and broker:
test_store.py, test_consumer.py, test_process_failures.py."""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import msgspec
import pytest
from clickhouse_connect.driver.client import Client
from prometheus_client import REGISTRY

from spendstream.common.envelope import read_record, seal
from spendstream.common.events import EncodedBatch, SealedEvent, sealed_events
from spendstream.common.key_backoff import KeyBackoff
from spendstream.common.prices import bundled
from spendstream.common.records import DeadLetter
from spendstream.common.tenants import KeyRing, KeyUnavailable
from spendstream.rollup.consumer import BatchWriter
from spendstream.rollup.erased import ErasedSubjects
from spendstream.rollup.writes import StoredBatch, encode_batches, fresh
from tests.rollup.fakes import Keys, MemoryStore, Published
from tests.support import usage_event

_COUNTED = ("stored", "duplicate")
KEY, WRONG_KEY = bytes(range(32)), bytes(range(1, 33))
NOW = datetime.now(UTC)
BACK = NOW - timedelta(days=3)  # a back-dated event's time, and an ingestion before the erasure below
ERASED_AT = NOW - timedelta(days=1)


def _events(ids: str, customer: str = "cust-1", at: datetime = NOW) -> list[SealedEvent]:
    tags = {"customer_id": customer}
    return sealed_events([usage_event(event_id=i, timestamp=at.isoformat(), tags=tags) for i in ids.split()])


def _sealed(workspace_id: str, batch: EncodedBatch, key: bytes = KEY, ingested_at: datetime = NOW) -> bytes:
    envelope = seal(batch, workspace_id=workspace_id, batch_id="b", key=key, key_version=1, ingested_at=ingested_at)
    return envelope.model_dump_json().encode()


def rec(workspace_id: str, ids: str, **how: Any) -> bytes:
    """A record of `ids` (space-separated event ids); `how`: customer, at (event time), key, ingested_at."""
    events = _events(ids, how.pop("customer", "cust-1"), how.pop("at", NOW))
    return _sealed(workspace_id, EncodedBatch.of(events), **how)


@dataclass
class Case:
    name: str
    deliveries: list[list[bytes | None]]  # each one handle() of these record values, at offsets 0, 1, ...
    stored: dict[str, int]  # events stored per workspace
    dead: list[tuple[int, str | None, str]] = field(default_factory=list)  # (offset, workspace_id, reason)
    repaired: list[date] = field(default_factory=list)  # days reconciled after a redelivery
    duplicates: int = 0  # events handed to the store that it found stored (the duplicate metric)
    failures: int = 0  # inserts the store fails before it recovers
    raises: bool = False  # the last delivery fails (so FastStream does not commit its offsets)
    chunk_records: int = 100


CASES = [
    Case("one batch", [[rec("ws1", "a b c")]], {"ws1": 3}),
    Case(
        "an id twice in a record and again in the next one",
        [[rec("ws1", "a a b"), rec("ws1", "b c")]],
        {"ws1": 3},
        duplicates=2,
    ),
    Case("one id in two workspaces is two events", [[rec("ws1", "a"), rec("ws2", "a")]], {"ws1": 1, "ws2": 1}),
    Case(
        "a redelivered batch stores nothing twice and its days are repaired",
        [[rec("ws1", "a b", at=BACK), rec("ws1", "c")]] * 2,
        {"ws1": 3},
        repaired=[BACK.date(), NOW.date()],
        duplicates=3,
    ),
    Case(
        "a repeat in a later chunk of the batch is found stored",
        [[rec("ws1", "a b"), rec("ws1", "c"), rec("ws1", "a")]],
        {"ws1": 3},
        repaired=[NOW.date()],
        duplicates=1,
        chunk_records=1,
    ),
    Case("a store failing twice is retried", [[rec("ws1", "a b")]], {"ws1": 2}, failures=2),
    Case("a store that stays down fails the batch", [[rec("ws1", "a b")]], {}, failures=99, raises=True),
    Case(
        "an unparsable envelope is dead-lettered, the rest stored",
        [[b"{not json", rec("ws1", "a"), None]],
        {"ws1": 1},
        dead=[(0, None, "unparsable_envelope"), (2, None, "unparsable_envelope")],
    ),
    Case("a shredded data key", [[rec("wsGone", "a"), rec("ws1", "b")]], {"ws1": 1}, [(0, "wsGone", "no_data_key")]),
    Case("a wrong key", [[rec("ws1", "a", key=WRONG_KEY)]], {}, [(0, "ws1", "undecryptable")]),
    Case(
        "a plaintext seal never wrote",
        [[_sealed("ws1", EncodedBatch(b'{"nope":1}', 1)), rec("ws1", "b")]],
        {"ws1": 1},
        [(0, "ws1", "invalid_events")],
    ),
    Case(
        "an erased customer's replayed events stay erased; their later ones and the others' are stored",
        [
            [
                rec("ws1", "a b", customer="gone", ingested_at=BACK),
                rec("ws1", "c", customer="kept", ingested_at=BACK),
                rec("ws1", "d", customer="gone"),
                rec("ws2", "e", customer="gone", ingested_at=BACK),
            ]
        ],
        {"ws1": 2, "ws2": 1},
    ),
]


class _NoClickHouse:
    """Enough of a client for ErasedSubjects to start empty and record in memory."""

    def command(self, *args: Any, **kwargs: Any) -> None: ...

    def insert(self, *args: Any, **kwargs: Any) -> None: ...

    def query(self, *args: Any, **kwargs: Any) -> Any:
        return SimpleNamespace(result_rows=[])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
async def test_batch_writer(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: 0.0)  # retries without waiting
    store, broker = MemoryStore(case.failures), Published()
    erased = ErasedSubjects(cast(Client, _NoClickHouse()), "db")
    erased.add("ws1", "gone", ERASED_AT)
    writer = BatchWriter(
        writer=store,
        repairs=store,
        keyring=cast(KeyRing, Keys({"ws1": KEY, "ws2": KEY})),
        broker=broker,
        topic_prefix="t.",
        retry_seconds=5.0,  # of back-off, which takes no time here
        erased=erased,
        chunk_records=case.chunk_records,
    )
    counted = REGISTRY.get_sample_value
    stored_before, duplicates_before = (counted(f"spendstream_rollup_events_{m}_total") or 0 for m in _COUNTED)
    for n, values in enumerate(case.deliveries, start=1):
        records = [SimpleNamespace(value=v, topic="usage", partition=0, offset=i) for i, v in enumerate(values)]
        if case.raises and n == len(case.deliveries):
            with pytest.raises(ConnectionError):
                await writer.handle(records)
        else:
            await writer.handle(records)
    assert await writer.repair() == 0
    per_workspace: dict[str, int] = {}
    for (workspace_id, _), requests in store.daily.items():
        per_workspace[workspace_id] = per_workspace.get(workspace_id, 0) + requests
    assert per_workspace == case.stored
    assert sorted(store.reconciled) == sorted(case.repaired)
    assert counted("spendstream_rollup_events_stored_total") == stored_before + sum(case.stored.values())
    assert counted("spendstream_rollup_events_duplicate_total") == duplicates_before + case.duplicates
    if case.failures:  # retried until it stored the batch, or for as long as retry_seconds allows
        assert store.inserts > 2 if case.raises else store.inserts == case.failures + 1
    letters = [(DeadLetter.model_validate_json(m), topic, key) for m, topic, key in broker.messages]
    # Coordinates and a reason code only: nothing of the record's content.
    assert all(json.loads(m).keys() == DeadLetter.model_fields.keys() for m, _, _ in broker.messages)
    assert [(d.source_offset, d.workspace_id, d.reason) for d, _, _ in letters] == case.dead
    assert all(
        (topic, key) == ("t.rollup.deadletter.v1", f"usage/0/{d.source_offset}".encode()) for d, topic, key in letters
    )


async def test_a_data_key_another_kek_wrapped_is_no_poison_the_batch_waits_and_comes_again() -> None:
    """Dead-lettering it would lose events that read again once the right KEK is configured: the batch is given
    back (nothing committed, nothing dead-lettered) after a pause, and counted."""
    store, broker = MemoryStore(0), Published()
    writer = BatchWriter(
        writer=store,
        repairs=store,
        keyring=cast(KeyRing, Keys({"ws1": KEY}, foreign=("wsOther",))),
        broker=broker,
        topic_prefix="t.",
        retry_seconds=5.0,
        key_backoff=KeyBackoff("rollup", first_delay=0.0),
    )
    before = REGISTRY.get_sample_value("spendstream_key_unavailable_total", {"consumer": "rollup"}) or 0.0
    records = [
        SimpleNamespace(value=v, topic="usage", partition=0, offset=i)
        for i, v in enumerate([rec("wsOther", "a"), rec("ws1", "b")])
    ]
    for _ in range(3):
        with pytest.raises(KeyUnavailable):
            await writer.handle(records)
    assert broker.messages == []
    assert REGISTRY.get_sample_value("spendstream_key_unavailable_total", {"consumer": "rollup"}) == before + 3


async def test_the_pause_on_an_unwrappable_key_doubles_up_to_its_bound() -> None:
    backoff = KeyBackoff("rollup", first_delay=0.001, max_delay=0.004)
    delays = []
    for _ in range(5):
        delays.append(backoff.delay("ws"))
        await backoff.wait(KeyUnavailable("ws", "kek-other"))
    assert delays == [0.001, 0.002, 0.004, 0.004, 0.004]
    assert backoff.delay("another") == 0.001


def _batch(workspace_id: str, ids: str, at: datetime = NOW) -> StoredBatch:
    return StoredBatch.of(workspace_id, "b", NOW, _events(ids, at=at))


@pytest.mark.parametrize(
    ("batches", "stored", "kept", "repeated"),
    [
        ([_batch("w", "a b")], set(), ["w:a b"], set()),
        ([_batch("w", "a a b"), _batch("w", "b c")], set(), ["w:a b", "w:c"], set()),
        ([_batch("w", "a b"), _batch("v", "a")], {("w", "a")}, ["w:b", "v:a"], {NOW.date()}),
        ([_batch("w", "a", at=BACK), _batch("w", "a b")], {("w", "a")}, ["w:b"], {BACK.date(), NOW.date()}),
        ([_batch("w", "a b")], {("w", "a"), ("w", "b")}, [], {NOW.date()}),
    ],
)
def test_fresh_keeps_each_new_event_once(
    batches: list[StoredBatch], stored: set[tuple[str, str]], kept: list[str], repeated: set[date]
) -> None:
    batches_kept, inserted = fresh(batches, stored)
    assert [f"{b.workspace_id}:{' '.join(e.event_id for e in b.events)}" for b in batches_kept] == kept
    assert inserted.new == sum(len(k.split(":")[1].split()) for k in kept)
    assert inserted.repeated_days == repeated


def test_a_batch_kept_whole_keeps_its_sealed_json_and_a_filtered_one_is_encoded_again() -> None:
    whole = dataclasses.replace(_batch("w", "a b"), events_json=b"[]")
    part = dataclasses.replace(_batch("w", "c d"), events_json=b"[]")
    kept, _ = fresh([whole, part], {("w", "c")})
    assert kept[0] is whole and kept[1].events_json is None and [e.event_id for e in kept[1].events] == ["d"]


async def test_the_events_encode_to_the_very_bytes_ingest_sealed() -> None:
    raw = [
        *_events("a b"),
        *sealed_events(
            [
                usage_event(
                    event_id="odd",
                    cost_usd=0.000123456789,
                    cached_input_tokens=7,
                    reasoning_tokens=None,
                    timestamp=datetime(2026, 11, 30, 23, 59, 59, 987654, tzinfo=UTC).isoformat(),
                    tags={"feature": 'it\'s "q" \\ \t\n', "route": "/v1/é/日本", "x": "\x01\u2028"},
                ),
                usage_event(event_id="none", cost_usd=None, tags={}),
            ]
        ),
    ]
    value = _sealed("ws1", EncodedBatch.of(raw))
    _, events, events_json = await read_record(value, cast(KeyRing, Keys({"ws1": KEY})))
    assert events_json is not None and msgspec.json.encode(events) == events_json
    sealed = StoredBatch("ws1", "b", NOW, events, None, events_json)
    assert encode_batches([sealed], bundled()) == encode_batches(
        [dataclasses.replace(sealed, events_json=None)], bundled()
    )
