"""rollup's consumer against the real broker and the ClickHouse engine: exact counts through duplicates,
replays, poison records, back-dated events and a ClickHouse outage."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest

from spendstream.common.envelope import seal
from spendstream.common.events import EncodedBatch, sealed_events
from spendstream.common.kafka import make_broker
from spendstream.common.prices import bundled
from spendstream.common.tenants import KeyRing
from spendstream.rollup import metrics
from spendstream.rollup.app import create_service
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.consumer import BatchWriter
from spendstream.rollup.queries import UsageQueries
from spendstream.rollup.reconcile import Reconciler
from spendstream.rollup.schema import DIMENSIONS, MEASURES, migrate
from spendstream.rollup.settings import RollupSettings
from spendstream.rollup.writes import ClickHouseWriter, Inserted, StoredBatch
from tests.rollup.kafka import dead_letters, events, lag, publisher, raw_count, reconciler, rollup_requests
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = pytest.mark.integration


def _rollup(iso: Isolation, **overrides: Any) -> Any:
    return create_service(iso.settings(RollupSettings, batch_timeout_ms=50, **overrides))


async def _caught_up(iso: Isolation, group: str = "spendstream-rollup") -> None:
    async def done() -> bool:
        return await lag(iso, group) == 0

    await eventually(done, timeout=30)


async def _total(client: httpx.AsyncClient, key: str, **params: str) -> dict[str, Any]:
    start = (datetime.now(UTC) - timedelta(days=390)).date().isoformat()
    r = await client.get("/v1/usage", params={"from": start, **params}, headers=auth(key))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_an_event_resent_in_a_later_batch_is_counted_once(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    first = events(3, cost_usd=1.0)
    again = [first[1], *events(1, cost_usd=1.0)]  # event 2 re-sent "days later" (past ingest's dedupe window)
    async with publisher(iso) as pub, serving([_rollup(iso)]) as client:
        await pub.batch(ws["workspace_id"], first)
        await pub.batch(ws["workspace_id"], again)
        await pub.batch(ws["workspace_id"], [first[0], first[0]])  # the same id twice inside one batch
        await _caught_up(iso)
        body = await _total(client, ws["read"])
    assert body["totals"]["requests"] == 4
    assert body["totals"]["cost_usd"] == "4.000000000"
    assert raw_count(iso, ws["workspace_id"]) == 4
    assert rollup_requests(iso, ws["workspace_id"]) == 4


async def test_replaying_the_topic_from_offset_zero_stores_nothing_twice(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    async with publisher(iso) as pub:
        for partition in (0, 1, 2):
            await pub.batch(ws["workspace_id"], events(5, cost_usd=0.5), partition=partition)
    async with serving([_rollup(iso)]):
        await _caught_up(iso)
    assert raw_count(iso, ws["workspace_id"]) == 15
    duplicates_before = metrics.EVENTS_DUPLICATE._value.get()
    # A new consumer group starts at offset 0 (auto_offset_reset=earliest): the whole topic again.
    async with serving([_rollup(iso, group_id="replay")]) as client:
        await _caught_up(iso, "replay")
        body = await _total(client, ws["read"])
    assert metrics.EVENTS_DUPLICATE._value.get() - duplicates_before == 15
    assert body["totals"]["requests"] == 15
    assert body["totals"]["cost_usd"] == "7.500000000"
    assert raw_count(iso, ws["workspace_id"]) == 15
    assert rollup_requests(iso, ws["workspace_id"]) == 15


async def test_poison_records_are_dead_lettered_without_content_and_the_partition_keeps_flowing(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    shredded = await create_workspace(iso, name="shredded")
    good = events(4, model="gpt-4o-mini", cost_usd=0.25)
    secret_model = "model-name-that-must-not-leak"
    async with publisher(iso) as pub:
        await pub.raw(b"\x00\xff this is not an envelope", partition=0)
        wrong_key = await pub.envelope(
            ws["workspace_id"], [usage_event(model=secret_model)], key=bytes(32)
        )  # sealed with a key that is not the workspace's
        await pub.raw(wrong_key, partition=0, key=ws["workspace_id"].encode())
        doomed = await pub.envelope(shredded["workspace_id"], [usage_event(model=secret_model)])
        await pub.shred(shredded["workspace_id"])
        await pub.raw(doomed, partition=0, key=shredded["workspace_id"].encode())
        invalid = await pub.invalid_plaintext(
            ws["workspace_id"], b'{"events": [{"prompt": "' + secret_model.encode() + b'"}]}'
        )
        await pub.raw(invalid, partition=0, key=ws["workspace_id"].encode())
        await pub.batch(ws["workspace_id"], good, partition=0)  # behind the poison, same partition
    async with serving([_rollup(iso)]) as client:
        await _caught_up(iso)
        body = await _total(client, ws["read"])
    assert body["totals"]["requests"] == 4
    letters = await dead_letters(iso, expected=4)
    assert len(letters) == 4
    parsed = [json.loads(v) for v in letters]
    assert [(d["reason"], d["source_offset"], d["workspace_id"]) for d in parsed] == [
        ("unparsable_envelope", 0, None),
        ("undecryptable", 1, ws["workspace_id"]),
        ("no_data_key", 2, shredded["workspace_id"]),
        ("invalid_events", 3, ws["workspace_id"]),
    ]
    for letter, raw in zip(parsed, letters, strict=True):
        assert set(letter) == {
            "consumer",
            "source_topic",
            "source_partition",
            "source_offset",
            "workspace_id",
            "reason",
            "at",
        }
        assert secret_model.encode() not in raw and b"this is not" not in raw and b"ciphertext" not in raw
        assert b"prompt" not in raw


async def test_late_and_back_dated_events_land_in_their_own_days(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    now = datetime.now(UTC)
    day_40 = (now - timedelta(days=40)).replace(hour=23, minute=59, second=59, microsecond=999000)
    day_200 = now - timedelta(days=200)
    # 01:30 at +05:00 is 20:30 UTC the day before: the UTC day counts.
    local = datetime.combine(now.date() - timedelta(days=3), datetime.min.time()).replace(hour=1, minute=30)
    offset_ts = local.isoformat() + "+05:00"
    batch = [
        usage_event(timestamp=day_40.isoformat(), cost_usd=1),
        usage_event(timestamp=day_200.isoformat(), cost_usd=2),
        usage_event(timestamp=offset_ts, cost_usd=3),
        usage_event(cost_usd=4),
    ]
    async with publisher(iso) as pub, serving([_rollup(iso)]) as client:
        await pub.batch(ws["workspace_id"], batch[3:])  # today's event first,
        await pub.batch(ws["workspace_id"], batch[:3])  # the late ones arrive afterwards
        await _caught_up(iso)
        r = await client.get(
            "/v1/usage",
            params={"from": (now - timedelta(days=365)).date().isoformat(), "group_by": "day"},
            headers=auth(ws["read"]),
        )
    days = {row["day"]: (row["requests"], row["cost_usd"]) for row in r.json()["rows"]}
    assert days == {
        day_200.date().isoformat(): (1, "2.000000000"),
        day_40.date().isoformat(): (1, "1.000000000"),
        (now.date() - timedelta(days=4)).isoformat(): (1, "3.000000000"),
        now.date().isoformat(): (1, "4.000000000"),
    }


async def test_clickhouse_failing_for_a_while_grows_lag_then_catches_up_exactly(iso: Isolation) -> None:
    """The fault: `DETACH TABLE usage_events` on the live engine, as when a table is unavailable (a replica
    being restored, a disk detached). Every insert and existence check fails with UNKNOWN_TABLE until the
    table is attached again; the consumer retries, hands batches back to Kafka (NACK) and commits nothing."""
    ws = await create_workspace(iso)
    ch = clickhouse_client(iso.stack.clickhouse)
    async with publisher(iso) as pub, serving([_rollup(iso, write_retry_seconds=0.5)]) as client:
        await pub.batch(ws["workspace_id"], events(10, cost_usd=0.1))
        await _caught_up(iso)
        failures_before = metrics.WRITE_FAILURES._value.get()
        ch.command(f"DETACH TABLE {iso.database}.usage_events")
        try:
            for _ in range(3):
                await pub.batch(ws["workspace_id"], events(10, cost_usd=0.1))

            async def failing_repeatedly() -> bool:
                return bool(metrics.WRITE_FAILURES._value.get() - failures_before >= 5)

            await eventually(failing_repeatedly, timeout=30)
            assert await lag(iso) == 3
        finally:
            ch.command(f"ATTACH TABLE {iso.database}.usage_events")
        await _caught_up(iso)
        body = await _total(client, ws["read"])
    assert body["totals"]["requests"] == 40
    assert body["totals"]["cost_usd"] == "4.000000000"
    assert raw_count(iso, ws["workspace_id"]) == 40
    assert rollup_requests(iso, ws["workspace_id"]) == 40


async def test_rows_record_whether_their_cost_was_reported_computed_or_unknown(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    priced = usage_event(model="gpt-4o-mini-2024-07-18", input_tokens=1000, output_tokens=1000)
    del priced["cost_usd"]
    unpriced = usage_event(provider="acme", model="acme-large-1")
    del unpriced["cost_usd"]
    async with publisher(iso) as pub, serving([_rollup(iso)]) as client:
        await pub.batch(ws["workspace_id"], [priced, unpriced, usage_event(cost_usd=0.5)])
        await _caught_up(iso)
        body = await _total(client, ws["read"])
    rows = (
        clickhouse_client(iso.stack.clickhouse)
        .query(
            f"SELECT cost_source, toString(sum(cost_usd)) FROM {iso.database}.usage_events "
            "WHERE workspace_id = {ws:String} GROUP BY cost_source",
            parameters={"ws": ws["workspace_id"]},
        )
        .result_rows
    )
    sources = {str(source): str(cost) for source, cost in rows}
    assert sources == {"reported": "0.5", "computed": "0.00075", "unknown": "0"}
    assert body["unknown_models"] == [
        {"provider": "acme", "model": "acme-large-1", "requests": 1, "input_tokens": 1000, "output_tokens": 200}
    ]
    assert date.fromisoformat(body["watermark"][:10]) == datetime.now(UTC).date()


async def test_batches_are_bounded_by_batch_max_records(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    async with publisher(iso) as pub:
        for _ in range(7):
            await pub.batch(ws["workspace_id"], events(2, cost_usd=0.1))
    count_before, sum_before = _histogram(metrics.BATCH_RECORDS)
    async with serving([_rollup(iso, batch_max_records=2)]):
        await _caught_up(iso)
    count, total = _histogram(metrics.BATCH_RECORDS)
    assert total - sum_before == 7  # every record handled once
    assert count - count_before >= 4  # at most 2 per batch: 7 records need at least 4 batches
    assert raw_count(iso, ws["workspace_id"]) == 14


def _histogram(histogram: Any) -> tuple[float, float]:
    samples = {s.name: s.value for metric in histogram.collect() for s in metric.samples}
    return samples["spendstream_rollup_batch_records_count"], samples["spendstream_rollup_batch_records_sum"]


async def test_two_replicas_joining_and_leaving_the_group_store_every_event_exactly_once(iso: Isolation) -> None:
    """Two rollup replicas in one group while batches keep arriving: B joins (rebalance), A leaves gracefully
    (rebalance, A finishes and commits its batch). A record whose partition moved mid-batch can be written by
    both; the existence check, the content-derived dedup token and, for what slips between them, reconcile
    (run here as the service runs it) keep the numbers exact."""
    ws = await create_workspace(iso)
    sent = 0
    async with publisher(iso) as pub:

        async def burst() -> None:
            nonlocal sent
            for partition in range(6):
                await pub.batch(ws["workspace_id"], events(5, cost_usd=0.01), partition=partition)
                sent += 5

        await burst()
        async with serving([_rollup(iso)]) as a_client:
            await burst()
            async with serving([_rollup(iso)]):
                await burst()
                assert (await a_client.get("/readyz")).status_code == 200
            await burst()
            await _caught_up(iso)
    today = datetime.now(UTC).date()
    reconciler(iso).reconcile(today, today)
    assert sent == 120
    assert rollup_requests(iso, ws["workspace_id"]) == 120
    final = (
        clickhouse_client(iso.stack.clickhouse)
        .query(
            f"SELECT count() FROM {iso.database}.usage_events FINAL WHERE workspace_id = {{ws:String}}",
            parameters={"ws": ws["workspace_id"]},
        )
        .result_rows[0][0]
    )
    assert final == 120


async def test_the_periodic_reconcile_covers_back_dated_days_touched_since_its_last_pass(iso: Isolation) -> None:
    client = clickhouse_client(iso.stack.clickhouse)
    migrate(client, iso.database, 12)
    events_writer = ClickHouseWriter(client, iso.database, bundled())
    settings = iso.settings(RollupSettings)
    writer = BatchWriter(
        writer=events_writer,
        repairs=Reconciler(client, iso.database),
        keyring=KeyRing(settings),
        broker=make_broker(settings, "t"),
        topic_prefix=iso.prefix,
        retry_seconds=1,
    )
    before = datetime.now(UTC) - timedelta(seconds=1)
    old = datetime.now(UTC) - timedelta(days=120)
    back_dated = [
        StoredBatch.of(
            "ws1",
            "b",
            datetime.now(UTC),
            sealed_events([usage_event(timestamp=old.isoformat(), cost_usd=1.0) for _ in range(2)]),
        )
    ]
    events_writer.insert_new(back_dated, events_writer.encode(back_dated))
    keys = ("workspace_id", "day", *DIMENSIONS, "cost_source")
    # The view part of that insert "lost": the rollup misses the back-dated day entirely.
    client.command(
        f"INSERT INTO {iso.database}.usage_daily ({', '.join((*keys, *MEASURES))}) "
        f"SELECT {', '.join(keys)}, {', '.join(f'-{m}' for m in MEASURES)} FROM {iso.database}.usage_daily",
        settings={"insert_deduplicate": 0},
    )
    today = datetime.now(UTC).date()
    assert await writer.reconcile(before, today, recent_days=2) == 1
    rows = UsageQueries(client, iso.database).usage("ws1", old.date(), old.date(), [], {})
    assert [(r["requests"], r["cost_usd"]) for r in rows] == [(2, Decimal("2"))]


async def test_a_batch_written_in_chunks_counts_each_event_once_across_chunks(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    first = events(3, cost_usd=1.0)
    async with publisher(iso) as pub:
        await pub.batch(ws["workspace_id"], first)
        for _ in range(4):
            await pub.batch(ws["workspace_id"], events(2, cost_usd=1.0))
        await pub.batch(ws["workspace_id"], [first[2]])  # a repeat that lands in a later chunk of the batch
    async with serving([_rollup(iso, write_chunk_records=2)]) as client:
        await _caught_up(iso)
        body = await _total(client, ws["read"])
    assert body["totals"]["requests"] == 11
    assert raw_count(iso, ws["workspace_id"]) == 11
    assert rollup_requests(iso, ws["workspace_id"]) == 11


class _OneKey:
    def __init__(self, key: bytes) -> None:
        self.key = key

    async def data_key(self, workspace_id: str, version: int) -> bytes | None:
        return self.key


class _FailingSecondWrite(ClickHouseWriter):
    """Stores the first chunk, then fails every write until told to recover."""

    def __init__(self, client: Any, database: str) -> None:
        super().__init__(client, database, bundled())
        self.writes = 0
        self.failing = True

    def insert_new(self, batches: Sequence[StoredBatch], body: bytes) -> Inserted:
        self.writes += 1
        if self.failing and self.writes > 1:
            raise ConnectionError("clickhouse went away")
        return super().insert_new(batches, body)


async def test_a_chunk_failing_fails_the_whole_batch_and_its_redelivery_stores_each_event_once(iso: Isolation) -> None:
    client = clickhouse_client(iso.stack.clickhouse)
    migrate(client, iso.database, 12)
    store = _FailingSecondWrite(client, iso.database)
    queries = UsageQueries(client, iso.database)
    key = bytes(range(32))
    settings = iso.settings(RollupSettings)
    writer = BatchWriter(
        writer=store,
        repairs=Reconciler(client, iso.database),
        keyring=cast(KeyRing, _OneKey(key)),
        broker=make_broker(settings, "t"),
        topic_prefix=iso.prefix,
        retry_seconds=0.01,
        chunk_records=2,
    )
    records = []
    for i in range(5):  # chunks of 2, 2 and 1 records
        batch = EncodedBatch.of(sealed_events(events(3, cost_usd=0.5)))
        envelope = seal(
            batch, workspace_id="ws1", batch_id=f"b{i}", key=key, key_version=1, ingested_at=datetime.now(UTC)
        )
        records.append(SimpleNamespace(value=envelope.model_dump_json().encode(), topic="t", partition=0, offset=i))
    with pytest.raises(ConnectionError):
        await writer.handle(records)
    assert store.writes >= 2
    assert (
        queries.usage("ws1", date.today() - timedelta(days=1), date.today() + timedelta(days=1), [], {})[0]["requests"]
        == 6
    )  # the first chunk is stored; the offsets were not committed
    store.failing = False
    await writer.handle(records)  # the redelivery
    [totals] = queries.usage("ws1", date.today() - timedelta(days=1), date.today() + timedelta(days=1), [], {})
    assert (totals["requests"], totals["cost_usd"]) == (15, Decimal("7.5"))
