"""rollup's one way into ClickHouse: whole batches into `usage_batches_in`, each event stored once (schema.py)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Protocol

import msgspec
import orjson
from clickhouse_connect.driver.client import Client

from spendstream.common.envelope import SealedEvent
from spendstream.common.pricebook import PriceBook
from spendstream.common.prices import PriceTable
from spendstream.rollup.schema import BATCH_COLUMNS

# Ids per existence query: a write chunk's worth (200 envelopes of 500, write_chunk_records). Each query
# has a fixed cost; 100,000 ids of ingest's length make a query text of 1-7 MB, which ClickHouse reads as one
# literal.
EXISTS_CHUNK = 100_000
# Identifiers that need no quoting inside a ClickHouse string literal, nor in a TSV line: what ingest's patterns
# allow for event and workspace ids. NUL and newline are the join separators below, between ids only.
_PLAIN_IDS = re.compile(r"[A-Za-z0-9_\-\x00]*")
_PLAIN_LINES = re.compile(r"[A-Za-z0-9_\-\n]*")
_encode_events = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """One decoded envelope: the events rollup stores, with what the insert needs of the envelope."""

    workspace_id: str
    batch_id: str
    ingested_at: datetime
    events: Sequence[SealedEvent]
    traceparent: str | None = None  # the producing request's trace, continued by the ClickHouse write
    # The plaintext's JSON array of exactly `events`, when envelope.stored_events vouches for it; else the
    # array is encoded from the structs (encode_batches).
    events_json: bytes | None = None

    @classmethod
    def of(
        cls,
        workspace_id: str,
        batch_id: str,
        ingested_at: datetime,
        events: Iterable[SealedEvent],
        traceparent: str | None = None,
    ) -> StoredBatch:
        """A batch of validated events (tests, tools), as rollup reads them from a sealed plaintext."""
        return cls(workspace_id, batch_id, ingested_at, list(events), traceparent)

    def keeping(self, events: Sequence[SealedEvent]) -> StoredBatch:
        """The same batch with only `events` (some of its own); their JSON is encoded again when written."""
        return StoredBatch(self.workspace_id, self.batch_id, self.ingested_at, events, self.traceparent)


@dataclass(frozen=True, slots=True)
class Inserted:
    new: int  # events stored by this call
    repeated_days: frozenset[date]  # UTC days of events that were stored before it (see insert_new)


class EventWriter(Protocol):
    """The writing side of the store, as the consumer uses it: `encode` in the consumer's thread, `insert_new` in
    a worker thread (so that thread does ClickHouse's work only)."""

    def encode(self, batches: Sequence[StoredBatch]) -> bytes: ...

    def insert_new(self, batches: Sequence[StoredBatch], body: bytes) -> Inserted: ...


def encode_batches(batches: Sequence[StoredBatch], prices: PriceBook | PriceTable) -> bytes:
    """Whole batches as the body of one insert into usage_batches_in (schema.py): a line per batch, its events as
    the JSON array ingest sealed, with no Python per event but the price (and its source ref) of those that
    report no cost. A batch without that array (`events_json` None) gets it encoded from its structs: the same
    bytes ingest seals."""
    price = PriceBook.of(prices).price
    lines = []
    for batch in batches:
        ws = batch.workspace_id
        events_json = batch.events_json if batch.events_json is not None else _encode_events(batch.events)
        costs: list[str | None] = []
        refs: list[str] = []
        for e in batch.events:
            if e.cost_usd is not None:
                costs.append(None)
                refs.append("")
                continue
            cost, ref = price(ws, e.provider, e.model, e.timestamp, e)
            costs.append(None if cost is None else str(cost))
            refs.append(ref)
        head = orjson.dumps([ws, batch.batch_id, batch.ingested_at.astimezone(UTC)])[:-1]
        lines.append(b"".join((head, b",", events_json, b",", orjson.dumps(costs), b",", orjson.dumps(refs), b"]")))
    return b"\n".join(lines)


def _plain_array(values: list[str]) -> str | None:
    """A ClickHouse array literal of `values` when none needs escaping, else None (bind them instead)."""
    joined = "\x00".join(values)
    if not _PLAIN_IDS.fullmatch(joined):
        return None
    return "['" + joined.replace("\x00", "','") + "']"


def _tsv_pairs(answer: bytes) -> list[tuple[str, str]]:
    """(workspace_id, event_id) pairs of a TabSeparated answer whose values are plain ids (no escapes)."""
    pairs = []
    for line in answer.decode().splitlines():
        workspace_id, _, event_id = line.partition("\t")
        pairs.append((workspace_id, event_id))
    return pairs


def _distinct(workspace_ids: list[str], ids: list[str]) -> bool:
    """Whether every (workspace_id, event_id) pair is there once. The usual case costs no Python loop over the
    100,000 pairs: one id can repeat only across workspaces or within the batch, and a set tells both apart."""
    return len(set(ids)) == len(ids) or len(set(zip(workspace_ids, ids, strict=True))) == len(ids)


def fresh(batches: Sequence[StoredBatch], stored: set[tuple[str, str]]) -> tuple[list[StoredBatch], Inserted]:
    """The batches keeping only events not in `stored`, each (workspace_id, event_id) once; how many that
    is, and the UTC days of the events that were in `stored`."""
    seen = set(stored)
    kept_batches, repeated, new = [], set(), 0
    for batch in batches:
        kept = []
        for event in batch.events:
            pair = (batch.workspace_id, event.event_id)
            if pair in stored:
                repeated.add(event.timestamp.astimezone(UTC).date())
            elif pair not in seen:
                seen.add(pair)  # the same id twice in one Kafka batch counts once too
                kept.append(event)
        if len(kept) == len(batch.events):
            kept_batches.append(batch)
        elif kept:
            kept_batches.append(batch.keeping(kept))
        new += len(kept)
    return kept_batches, Inserted(new=new, repeated_days=frozenset(repeated))


class ClickHouseWriter:
    """The EventWriter of ClickHouse: the existence check and the one insert."""

    def __init__(self, client: Client, database: str, prices: PriceBook | PriceTable) -> None:
        self._client = client
        self.db = database
        self._prices = PriceBook.of(prices)

    def encode(self, batches: Sequence[StoredBatch]) -> bytes:
        return encode_batches(batches, self._prices)

    def insert_new(self, batches: Sequence[StoredBatch], body: bytes) -> Inserted:
        """Insert the events of `batches` whose (workspace_id, event_id) is not stored yet; `body` is
        `encode(batches)`, inserted as it is when every event is new (the usual case).

        Events found already stored are a redelivery (a crash, a rebalance, a retried write) or a re-send.
        Their raw part is durable, but their view part may not be: a process killed between the two parts, or
        an insert that failed after the raw part, leaves the rollup short, and this redelivery inserts nothing
        that would trigger the view again. Their days are returned so the caller repairs them (reconcile.py)."""
        workspace_ids = [b.workspace_id for b in batches for _ in b.events]
        ids = [e.event_id for b in batches for e in b.events]
        stored = self.existing(set(workspace_ids), ids)
        if not stored and _distinct(workspace_ids, ids):
            self.insert(body)
            return Inserted(new=len(ids), repeated_days=frozenset())
        kept, inserted = fresh(batches, stored)
        if kept:
            self.insert(self.encode(kept))
        return inserted

    def existing(self, workspaces: set[str], ids: list[str]) -> set[tuple[str, str]]:
        """Which (workspace_id, event_id) pairs of `workspaces` x `ids` are stored: one query per EXISTS_CHUNK
        ids, whatever the number of workspaces in the batch."""
        found: set[tuple[str, str]] = set()
        ordered = sorted(workspaces)
        ws_literal = _plain_array(ordered)
        for i in range(0, len(ids), EXISTS_CHUNK):
            chunk = ids[i : i + EXISTS_CHUNK]
            sql = (
                f"SELECT workspace_id, event_id FROM {self.db}.usage_events "
                "WHERE workspace_id IN {ws} AND event_id IN {ids}"
            )
            lines = "\n".join(chunk)
            if ws_literal is not None and _PLAIN_LINES.fullmatch(lines):
                # Plain ids go inline, one per line of one string literal read by format(): ClickHouse's
                # parser takes one long literal in a blink, where an array literal of 100,000 strings is slow to
                # parse (and clickhouse-connect's binding escapes bound strings character by character in
                # Python). The query text travels in the request body, but ClickHouse parses at most
                # max_query_size of it (256 KiB by default).
                # raw_query, not query: query() runs half a dozen regular expressions (comments, LIMIT, command
                # or not) over the whole text in Python, holding the GIL. The answer, plain pairs, is read as TSV.
                table = f"(SELECT event_id FROM format(TSV, 'event_id String', '{lines}'))"
                answer = self._client.raw_query(
                    sql.format(ws=ws_literal, ids=table),
                    fmt="TabSeparated",
                    settings={"max_query_size": len(lines) + 65_536},
                )
                found.update(_tsv_pairs(answer))
            else:
                result = self._client.query(
                    sql.format(ws="{ws:Array(String)}", ids="{ids:Array(String)}"),
                    parameters={"ws": ordered, "ids": chunk},
                )
                found.update((str(w), str(e)) for w, e in result.result_rows)
            # The IN pair over-selects across workspaces (same id elsewhere); the caller keeps exact pairs.
        return found

    def insert(self, body: bytes) -> None:
        """One insert of `body` (encode_batches) into usage_batches_in, as it is: no existence check."""
        # Derived from the body (orjson and msgspec write the same events the same way): a retry of exactly these
        # events is discarded by ClickHouse, raw and rollup. hashlib lets other threads run meanwhile.
        token = hashlib.sha256(body).hexdigest()
        # input_format_parallel_parsing=0: the parse runs beside the consumer's own decoding, and the parallel
        # one took more CPU and more wall time here. optimize_on_insert=0: the only rows it would collapse (one
        # key twice) were dropped by insert_new.
        self._client.raw_insert(
            f"{self.db}.usage_batches_in",
            BATCH_COLUMNS,
            body,
            fmt="JSONCompactEachRow",
            settings={
                "insert_deduplication_token": token,
                "optimize_on_insert": 0,
                "input_format_parallel_parsing": 0,
                "date_time_input_format": "best_effort",
            },
        )
