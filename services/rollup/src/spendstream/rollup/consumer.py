"""Consuming `usage.events.v1` in bounded batches into ClickHouse.

Delivery: at-least-once from Kafka, made effectively-once by the store (see schema.py). Per batch:
  1. decode and decrypt every record; a poison record (unparsable, undecryptable, shredded key) becomes a
     content-free dead letter and is skipped, so it never blocks the partition. A data key the KEK cannot
     unwrap (another KEK wrapped it) is no poison: the record becomes readable with the right KEK, so the
     batch waits (key_backoff.py) and comes again, dead-lettering nothing;
  2. one ClickHouse insert of the events not stored yet per chunk of `chunk_records` records (under a
     backlog a batch holds two chunks: the second is decoded while the first is written), retried with
     back-off while ClickHouse fails;
  3. return -> FastStream commits the offsets (ack policy NACK_ON_ERROR). An exception instead seeks back
     and the same records come again; chunks written before it are then found stored.
A crash after 2 and before 3 redelivers the batch; step 2 then finds every event stored and inserts nothing.
A rebalance mid-batch: the revoked partitions' offsets are not committed, the next owner redoes them, same.
A crash *inside* 2 (raw part written, view part not) or a write that failed after the raw part: the
redelivery finds the events stored, so the view is not fed again and the rollup is short. Every day with
events found already stored is therefore marked suspect and repaired (reconciled from the raw table) within
`repair_interval_seconds`, instead of waiting for the periodic reconcile.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any, Protocol

from opentelemetry.trace import SpanKind

from spendstream.common import tracing
from spendstream.common.envelope import UnreadableRecord, read_record
from spendstream.common.key_backoff import KeyBackoff
from spendstream.common.records import DeadLetter
from spendstream.common.tenants import KeyRing, KeyUnavailable
from spendstream.common.topics import ROLLUP_DEAD_LETTERS, topic_name
from spendstream.rollup import metrics
from spendstream.rollup.erased import ErasedSubjects
from spendstream.rollup.ledger import Ledger
from spendstream.rollup.reconcile import Repairs
from spendstream.rollup.writes import EventWriter, Inserted, StoredBatch

log = logging.getLogger(__name__)
_TRACER = tracing.tracer("rollup")


def _admitted(batch: StoredBatch, kept: StoredBatch) -> StoredBatch:
    """`kept` (the events `admit` let through), with the per-day count of those it left out."""
    if kept is batch:
        return batch
    left_out = Counter(e.timestamp.astimezone(UTC).date() for e in batch.events)
    left_out.subtract(e.timestamp.astimezone(UTC).date() for e in kept.events)
    return replace(kept, dropped=tuple(sorted((day, n) for day, n in left_out.items() if n)))


class Publisher(Protocol):
    """Where dead letters go (a KafkaBroker)."""

    async def publish(self, message: bytes, topic: str, *, key: bytes) -> Any: ...


class BatchWriter:
    def __init__(
        self,
        *,
        writer: EventWriter,
        repairs: Repairs,
        keyring: KeyRing,
        broker: Publisher,
        topic_prefix: str,
        retry_seconds: float,
        erased: ErasedSubjects | None = None,
        chunk_records: int = 100,
        key_backoff: KeyBackoff | None = None,
        ledger: Ledger | None = None,
    ) -> None:
        self._writer = writer
        self._ledger = ledger
        self._key_backoff = key_backoff or KeyBackoff("rollup")
        self._repairs = repairs
        self._chunk_records = chunk_records
        self._erased = erased
        self._keyring = keyring
        self._broker = broker
        self._dead_letter_topic = topic_name(ROLLUP_DEAD_LETTERS, topic_prefix)
        self._retry_seconds = retry_seconds
        # Inserts and reconcile never overlap in this process: reconcile must not see an insert half-applied
        # (raw part stored, view part not yet), which would look like drift and be "corrected" twice.
        self._lock = asyncio.Lock()
        self._suspect_days: set[date] = set()

    @property
    def lock(self) -> asyncio.Lock:
        """Held around every ClickHouse write of this process; erasure takes it too (see erasure.py)."""
        return self._lock

    async def handle(self, records: Sequence[Any]) -> None:
        """Store one Kafka batch (aiokafka ConsumerRecords). Returns only when it is durably stored.

        Written in chunks of `chunk_records` records, and the next chunk is decoded (Python, this thread)
        while the previous one is written (ClickHouse, a worker thread that releases the GIL): under a
        backlog a batch is 600 records of 500 events, three chunks: only the first chunk's decoding and the
        last one's write are not overlapped (docs/benchmarks.md, rollup).
        The chunks are written one after the other, under the lock, and the offsets are committed only
        after the last; a failure anywhere fails the whole batch, which then comes again (chunks already
        written are found stored)."""
        metrics.BATCH_RECORDS.observe(len(records))
        # Only the envelopes' ingestion times outlive their chunk: a chunk's events and its body are freed once it
        # is written, so a batch never holds more than two chunks' events at a time.
        ingested: list[float] = []
        events_total = new = 0
        writing: asyncio.Task[int] | None = None
        try:
            for first in range(0, len(records), self._chunk_records):
                batches = []
                for record in records[first : first + self._chunk_records]:
                    batch = await self._decode(record)
                    if batch is not None:
                        batches.append(batch)
                # Encoded here, while the previous chunk is still being written, so that the writing thread does
                # ClickHouse's work only.
                insert, count = self._encode(batches)
                if writing is not None:
                    new += await writing
                    writing = None
                if batches:  # even without events: the ledger records what was read (erased customers' events)
                    writing = asyncio.create_task(self._write_traced(insert, count, batches))
                    await asyncio.sleep(0)  # let it reach its worker thread before the next chunk is decoded
                ingested += [b.ingested_at.timestamp() for b in batches]
                events_total += count
            if writing is not None:
                new += await writing
                writing = None
        finally:
            if writing is not None:  # decoding failed while a chunk was being written: let the write end
                await asyncio.gather(writing, return_exceptions=True)
        if not ingested:
            return
        metrics.EVENTS_STORED.inc(new)
        metrics.EVENTS_DUPLICATE.inc(events_total - new)
        now = time.time()
        for at in ingested:
            metrics.INGEST_TO_STORED_SECONDS.observe(max(0.0, now - at))
        metrics.LAST_STORED_INGESTED_AT.set(max(ingested))

    def _encode(self, batches: list[StoredBatch]) -> tuple[Callable[[], Inserted], int]:
        """The write of a chunk (run in a worker thread) and its number of events. A workspace with an erased
        customer has its batches filtered by `admit` first (replayed events of erased customers stay erased)."""
        if self._erased is not None and self._erased.concern(b.workspace_id for b in batches):
            batches = [_admitted(b, self._erased.admit(b)) for b in batches]
        count = sum(len(b.events) for b in batches)
        return partial(self._writer.insert_new, batches, self._writer.encode(batches)), count

    async def _write_traced(self, insert: Callable[[], Inserted], count: int, batches: list[StoredBatch]) -> int:
        parent, links = tracing.parent_and_links([b.traceparent for b in batches])
        # One span per ClickHouse write: the child of the first request's trace, linked to every other one.
        with _TRACER.start_as_current_span(
            "rollup.clickhouse_insert",
            context=parent,
            links=links,
            kind=SpanKind.CLIENT,
            attributes={"spendstream.rows": count},
        ):
            return await self._write(insert)

    async def _decode(self, record: Any) -> StoredBatch | None:
        try:
            envelope, events, events_json = await read_record(record.value, self._keyring)
        except UnreadableRecord as exc:
            await self._dead_letter(record, exc.workspace_id, exc.reason)
            if self._ledger is not None and exc.batch_id is not None and exc.ingested_at is not None:
                # An envelope of ingest's (it parsed, its key exists): its events count as dead-lettered.
                await asyncio.to_thread(
                    self._ledger.record_dead, exc.workspace_id or "", exc.batch_id, exc.ingested_at, exc.event_count
                )
            return None
        except KeyUnavailable as exc:
            await self._key_backoff.wait(exc)
            raise
        return StoredBatch(
            envelope.workspace_id, envelope.batch_id, envelope.ingested_at, events, envelope.traceparent, events_json
        )

    async def _dead_letter(self, record: Any, workspace_id: str | None, reason: str) -> None:
        letter = DeadLetter(
            consumer="rollup",
            source_topic=record.topic,
            source_partition=record.partition,
            source_offset=record.offset,
            workspace_id=workspace_id,
            reason=reason,
            at=datetime.now(UTC),
        )
        # Published before the batch commits: a crash here redelivers the record and dead-letters it again
        # (at-least-once dead letters, keyed by coordinates so duplicates are recognisable).
        await self._broker.publish(
            letter.model_dump_json().encode(),
            self._dead_letter_topic,
            key=f"{record.topic}/{record.partition}/{record.offset}".encode(),
        )
        metrics.DEAD_LETTERS.labels(reason).inc()
        log.warning(
            "record dead-lettered", extra={"reason": reason, "partition": record.partition, "offset": record.offset}
        )

    async def _write(self, insert: Callable[[], Inserted]) -> int:
        """Insert with exponential back-off and jitter; after `retry_seconds` give the batch back to Kafka."""
        deadline = time.monotonic() + self._retry_seconds
        delay = 0.1
        while True:
            started = time.perf_counter()
            try:
                async with self._lock:
                    inserted = await asyncio.to_thread(insert)
            except Exception as exc:  # clickhouse-connect and chDB raise many types; all mean "not stored"
                metrics.WRITE_FAILURES.inc()
                if time.monotonic() + delay > deadline:
                    raise
                log.warning(
                    "clickhouse write failed; retrying",
                    extra={"error": type(exc).__name__, "retry_in_s": round(delay, 2)},
                )
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 5.0)
                continue
            metrics.INSERT_SECONDS.observe(time.perf_counter() - started)
            self._suspect_days |= inserted.repeated_days
            return inserted.new

    async def repair(self, confirm_after: float = 0.0) -> int:
        """Reconcile the days that saw redelivered events since the last call (see the module docstring).

        Called every few seconds, not per batch: a partition replayed from offset 0 marks the same few days
        again and again, and they are reconciled once per interval, not once per batch."""
        days, self._suspect_days = sorted(self._suspect_days), set()
        fixed = 0
        while days:
            try:
                async with self._lock:
                    fixed += await asyncio.to_thread(self._repairs.reconcile, days[0], days[0], confirm_after)
            except BaseException:
                self._suspect_days.update(days)  # this day and the rest are tried again next time
                raise
            days.pop(0)
        return fixed

    async def reconcile(self, since: datetime, today: date, recent_days: int, confirm_after: float = 0.0) -> int:
        """Reconcile the last `recent_days` days plus every day that got events stored since `since`
        (back-dated events included), one day per lock hold so the consumer is never stalled for long."""
        touched = await asyncio.to_thread(self._repairs.days_stored_since, since)
        days = sorted({today - timedelta(days=i) for i in range(recent_days + 1)} | set(touched))
        fixed = 0
        for day in days:
            async with self._lock:
                fixed += await asyncio.to_thread(self._repairs.reconcile, day, day, confirm_after)
        return fixed
