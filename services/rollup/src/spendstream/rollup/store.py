"""rollup's ClickHouse store: exact inserts, usage reads, reconciliation. See schema.py for the design."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from operator import itemgetter
from typing import Any

import orjson
from clickhouse_connect.driver.client import Client

from spendstream.common.envelope import SealedEvent
from spendstream.common.events import UsageEvent
from spendstream.common.prices import Price, PriceTable
from spendstream.rollup.schema import BATCH_COLUMNS, DIMENSIONS, INSERTED_COLUMNS, MEASURES

EVENT_COLUMNS = INSERTED_COLUMNS  # the row layout event_rows builds (its one definition is in schema.py)
GROUPABLE = ("day", *DIMENSIONS)
# Ids per existence query: a write chunk's worth (200 envelopes of 500, write_chunk_records). Each query
# has a fixed cost (~20 ms here); 100,000 ids of ingest's length make a query text of 1-7 MB, which ClickHouse
# reads as one literal.
EXISTS_CHUNK = 100_000
# Identifiers that need no quoting inside a ClickHouse string literal, nor in a TSV line: what ingest's patterns
# allow for event and workspace ids. NUL and newline are the join separators below, between ids only.
_PLAIN_IDS = re.compile(r"[A-Za-z0-9_\-\x00]*")
_PLAIN_LINES = re.compile(r"[A-Za-z0-9_\-\n]*")
EXPORT_EVENT_COLUMNS = (
    "event_id",
    "ts",
    "ingested_at",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "latency_ms",
    "cost_usd",
    "cost_source",
    "feature",
    "route",
    "task_type",
    "customer_plan",
    "customer_id",
    "environment",
    "tags",
)


@dataclass(frozen=True, slots=True)
class StoredBatch:
    workspace_id: str
    batch_id: str
    ingested_at: datetime
    events: Sequence[SealedEvent]
    traceparent: str | None = None  # the producing request's trace, continued by the ClickHouse write
    # The plaintext's JSON array of the events, when envelope.stored_events vouches for it (encode_batches).
    events_json: bytes | None = None

    @classmethod
    def of(
        cls,
        workspace_id: str,
        batch_id: str,
        ingested_at: datetime,
        events: Iterable[UsageEvent],
        traceparent: str | None = None,
    ) -> StoredBatch:
        """A batch of validated events (tests, tools), as rollup reads them from a sealed plaintext."""
        return cls(workspace_id, batch_id, ingested_at, [SealedEvent.of(e) for e in events], traceparent)


def event_rows(batch: StoredBatch, prices: PriceTable) -> list[tuple[Any, ...]]:
    """One row per event, in EVENT_COLUMNS order; a cost as the decimal string ClickHouse parses."""
    rows: list[tuple[Any, ...]] = []
    append = rows.append
    workspace_id, batch_id, lookup = batch.workspace_id, batch.batch_id, prices.lookup
    # In the standard library's UTC (the envelope's has pydantic's TzInfo): orjson writes that one in C.
    ingested_at = batch.ingested_at.astimezone(UTC)
    priced: dict[tuple[str, str], Price | None] = {}
    for e in batch.events:
        cost, cached, reasoning = e.cost_usd, e.cached_input_tokens or 0, e.reasoning_tokens or 0
        if cost is not None:
            source = "reported"
        else:
            cost = _computed_cost(e, lookup, priced)
            cost, source = ("0", "unknown") if cost is None else (cost, "computed")
        tags = e.tags
        tag = tags.get
        append(
            (
                workspace_id,
                e.event_id,
                e.timestamp,
                ingested_at,
                batch_id,
                e.provider,
                e.model,
                e.input_tokens,
                e.output_tokens,
                cached,
                reasoning,
                e.latency_ms,
                cost,
                source,
                tag("feature", ""),
                tag("route", ""),
                tag("task_type", ""),
                tag("customer_plan", ""),
                tag("customer_id", ""),
                tag("environment", ""),
                tags,
            )
        )
    return rows


def _computed_cost(
    event: SealedEvent, lookup: Callable[[str, str], Price | None], priced: dict[tuple[str, str], Price | None]
) -> str | None:
    """The price of an event that reports no cost, as decimal text; None when its model is not priced.

    `priced` memoises the lookups of one batch, which uses a handful of models (PriceTable's own memo costs a
    call and two tuples per event, a tenth of event_rows)."""
    model = (event.provider, event.model)
    price = priced[model] if model in priced else priced.setdefault(model, lookup(*model))
    if price is None:
        return None
    return str(
        price.cost_of(
            event.input_tokens, event.output_tokens, event.cached_input_tokens or 0, event.reasoning_tokens or 0
        )
    )


def encode_batches(batches: Sequence[StoredBatch], prices: PriceTable) -> bytes:
    """Whole batches as the body of one insert into usage_batches_in (Store.insert_new_batches; schema.py):
    a line per batch, its events as the JSON array ingest sealed, with no Python per event but the price of
    those that report no cost. Every batch must carry its `events_json`."""
    lookup, priced = prices.lookup, dict[tuple[str, str], Price | None]()
    lines = []
    for batch in batches:
        if batch.events_json is None:
            raise ValueError("a batch without the JSON of its events goes the row way (event_rows)")
        computed = [None if e.cost_usd is not None else _computed_cost(e, lookup, priced) for e in batch.events]
        head = orjson.dumps([batch.workspace_id, batch.batch_id, batch.ingested_at.astimezone(UTC)])[:-1]
        lines.append(b"".join((head, b",", batch.events_json, b",", orjson.dumps(computed), b"]")))
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


def encode_rows(rows: list[tuple[Any, ...]]) -> bytes:
    """`rows` (event_rows) as the body of one insert (Store.insert_encoded)."""
    # As JSON, parsed by ClickHouse: orjson writes the whole batch in one call, where clickhouse-connect's
    # Native serialisation ran Python per value (a fifth of rollup's time). The rows go as they are, an
    # array of arrays without its outer brackets, which JSONCompactEachRow reads as rows separated by
    # commas: transposing them into JSONCompactColumns cost as much Python as writing them (per 100,000
    # rows, 64-98 ms for this against 139-164 ms, for the same ClickHouse time; docs/benchmarks.md).
    return orjson.dumps(rows, default=str, option=orjson.OPT_NAIVE_UTC)[1:-1]


@dataclass(frozen=True, slots=True)
class Inserted:
    new: int  # rows stored by this call
    repeated_days: frozenset[date]  # UTC days of rows that were stored before it (see Store.insert_new)


def _utc_day(ts: datetime) -> date:
    """The day ClickHouse's toDate(ts) gives for a UTC DateTime64 column (a naive value is UTC already)."""
    return (ts.astimezone(UTC) if ts.tzinfo else ts).date()


_first, _second = itemgetter(0), itemgetter(1)


def _distinct(workspace_ids: list[str], ids: list[str]) -> bool:
    """Whether every (workspace_id, event_id) pair is there once. The usual case costs no Python loop over the
    100,000 pairs: one id can repeat only across workspaces or within the batch, and a set tells both apart."""
    return len(set(ids)) == len(ids) or len(set(zip(workspace_ids, ids, strict=True))) == len(ids)


class Store:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self.db = database

    def _existing(self, workspaces: set[str], ids: list[str]) -> set[tuple[str, str]]:
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
                # parser takes one long literal in a blink, where an array literal of 100,000 strings cost
                # 0.6-0.8 s (and clickhouse-connect's binding escapes bound strings character by character in
                # Python). The query text travels in the request body, but ClickHouse parses at most
                # max_query_size of it (256 KiB by default).
                # raw_query, not query: query() runs half a dozen regular expressions (comments, LIMIT, command
                # or not) over the whole text in Python, holding the GIL, which took as long as ClickHouse's
                # own work here (per 100,000 ids, 65 ms against 33 ms). The answer, plain pairs, is read as TSV.
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

    def insert_new(self, rows: list[tuple[Any, ...]], encoded: bytes | None = None) -> Inserted:
        """Insert the rows (event_rows) whose (workspace_id, event_id) is not stored yet.

        `encoded` is encode_rows(rows) when the caller made it already (the consumer does, beside its decoding,
        so that this thread does ClickHouse's work only); it is used when every row is new.

        Rows found already stored are a redelivery (a crash, a rebalance, a retried write) or a re-send. Their
        raw part is durable, but their view part may not be: a process killed between the two parts, or an
        insert that failed after the raw part, leaves the rollup short, and this redelivery inserts nothing
        that would trigger the view again. Their days are returned so the caller repairs them (reconcile)."""
        workspace_ids, ids = list(map(_first, rows)), list(map(_second, rows))
        stored = self._existing(set(workspace_ids), ids)
        if not stored and _distinct(workspace_ids, ids):
            self.insert_encoded(encoded if encoded is not None else encode_rows(rows))
            return Inserted(new=len(rows), repeated_days=frozenset())
        return self._insert_fresh(rows, stored)

    def insert_new_batches(self, batches: Sequence[StoredBatch], encoded: bytes, prices: PriceTable) -> Inserted:
        """insert_new for whole batches, `encoded` by encode_batches: the events go as ingest sealed them when
        none is stored yet (the usual case), else the fresh ones go the row way (insert_new's)."""
        workspace_ids = [b.workspace_id for b in batches for _ in b.events]
        ids = [e.event_id for b in batches for e in b.events]
        stored = self._existing(set(workspace_ids), ids)
        if not stored and _distinct(workspace_ids, ids):
            self._insert(f"{self.db}.usage_batches_in", BATCH_COLUMNS, encoded)
            return Inserted(new=len(ids), repeated_days=frozenset())
        return self._insert_fresh([row for b in batches for row in event_rows(b, prices)], stored)

    def _insert_fresh(self, rows: list[tuple[Any, ...]], stored: set[tuple[str, str]]) -> Inserted:
        """Insert the rows not in `stored`, each (workspace_id, event_id) once; the days of the others."""
        seen = set(stored)
        fresh = []
        for row in rows:
            pair = (row[0], row[1])
            if pair not in seen:
                seen.add(pair)  # the same id twice in one Kafka batch counts once too
                fresh.append(row)
        if fresh:
            self.insert_rows(fresh)
        repeated = frozenset(_utc_day(r[2]) for r in rows if (r[0], r[1]) in stored)
        return Inserted(new=len(fresh), repeated_days=repeated)

    def insert_rows(self, rows: list[tuple[Any, ...]]) -> None:
        """One insert of `rows` (event_rows) as they are; insert_new is the exact path that uses it."""
        self.insert_encoded(encode_rows(rows))

    def insert_encoded(self, body: bytes) -> None:
        """One insert of rows as encode_rows wrote them."""
        self._insert(f"{self.db}.usage_events_in", EVENT_COLUMNS, body)

    def _insert(self, table: str, columns: Sequence[str], body: bytes) -> None:
        # Derived from the rows (their bytes; orjson writes the same rows the same way): a retry of exactly
        # these rows is discarded by ClickHouse, raw and rollup. hashlib lets other threads run meanwhile.
        token = hashlib.sha256(body).hexdigest()
        # input_format_parallel_parsing=0: the parse runs beside the consumer's own decoding, and the parallel
        # one took more CPU and more wall time here. optimize_on_insert=0: the only rows it would collapse (one
        # key twice) were dropped by insert_new.
        self._client.raw_insert(
            table,
            columns,
            body,
            fmt="JSONCompactEachRow",
            settings={
                "insert_deduplication_token": token,
                "optimize_on_insert": 0,
                "input_format_parallel_parsing": 0,
                "date_time_input_format": "best_effort",
            },
        )

    def usage(
        self,
        workspace_id: str,
        start: date,
        end: date,
        group_by: Iterable[str],
        filters: Mapping[Any, str | Sequence[str]],
    ) -> list[dict[str, Any]]:
        """Totals per group over [start, end] (UTC days, inclusive), from the daily rollup.

        `filters` maps a dimension to the values it may take (several values: any of them)."""
        groups = [g for g in GROUPABLE if g in set(group_by)]
        params: dict[str, Any] = {"ws": workspace_id, "start": start, "end": end}
        where = ["workspace_id = {ws:String}", "day >= {start:Date}", "day <= {end:Date}"]
        for i, (column, values) in enumerate(sorted(filters.items())):
            if column not in DIMENSIONS:
                raise ValueError(f"cannot filter on {column}")
            where.append(f"{column} IN {{f{i}:Array(String)}}")
            params[f"f{i}"] = [values] if isinstance(values, str) else list(values)
        select = [*groups, *(f"sum({m}) AS {m}" for m in MEASURES)]
        sql = f"SELECT {', '.join(select)} FROM {self.db}.usage_daily WHERE {' AND '.join(where)}" + (
            f" GROUP BY {', '.join(groups)} ORDER BY {', '.join(groups)}" if groups else ""
        )
        result = self._client.query(sql, parameters=params)
        rows = []
        for record in result.result_rows:
            row = dict(zip(result.column_names, record, strict=True))
            # A group whose corrections cancelled out (reconcile) is not a group with usage.
            if row["requests"] == 0:
                continue
            if "day" in row:
                row["day"] = row["day"].isoformat()
            rows.append(row)
        return rows

    def unknown_models(self, workspace_id: str, start: date, end: date) -> list[dict[str, Any]]:
        """Models of the range that the price table could not price (their events carry cost 'unknown')."""
        result = self._client.query(
            f"SELECT provider, model, sum(requests) FROM {self.db}.usage_daily WHERE workspace_id = {{ws:String}} "
            "AND day >= {start:Date} AND day <= {end:Date} AND cost_source = 'unknown' "
            "GROUP BY provider, model HAVING sum(requests) > 0 ORDER BY provider, model",
            parameters={"ws": workspace_id, "start": start, "end": end},
        )
        return [{"provider": p, "model": m, "requests": n} for p, m, n in result.result_rows]

    def watermark(self, workspace_id: str) -> datetime | None:
        """Newest ingestion time stored for the workspace: every batch ingested before it is stored.

        ingest keys batches by workspace, so they are consumed in order from one partition (schema.py)."""
        result = self._client.query(
            f"SELECT max(ingested_at), count() FROM {self.db}.workspace_watermarks WHERE workspace_id = {{ws:String}}",
            parameters={"ws": workspace_id},
        )
        newest, count = result.result_rows[0]
        if not count:
            return None
        # Some chDB versions return DateTime64 without its zone; the column is UTC by definition.
        stored: datetime = newest if newest.tzinfo else newest.replace(tzinfo=UTC)
        return stored

    def events_page(self, workspace_id: str, after: str, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` stored events with event_id > `after`, in event_id order (keyset paging, FINAL)."""
        result = self._client.query(
            f"SELECT {', '.join(EXPORT_EVENT_COLUMNS)} FROM {self.db}.usage_events FINAL "
            "WHERE workspace_id = {ws:String} AND event_id > {after:String} ORDER BY event_id LIMIT {n:UInt32}",
            parameters={"ws": workspace_id, "after": after, "n": limit},
        )
        return [dict(zip(result.column_names, values, strict=True)) for values in result.result_rows]

    def daily_days(self, workspace_id: str) -> list[date]:
        result = self._client.query(
            f"SELECT DISTINCT day FROM {self.db}.usage_daily WHERE workspace_id = {{ws:String}} ORDER BY day",
            parameters={"ws": workspace_id},
        )
        return [r[0] for r in result.result_rows]

    def daily_rows(self, workspace_id: str, day: date) -> list[dict[str, Any]]:
        """The rollup rows of one day, re-aggregated (SummingMergeTree merges eventually)."""
        keys = ", ".join(("day", *DIMENSIONS, "cost_source"))
        result = self._client.query(
            f"SELECT {keys}, {', '.join(f'sum({m}) AS {m}' for m in MEASURES)} FROM {self.db}.usage_daily "
            f"WHERE workspace_id = {{ws:String}} AND day = {{day:Date}} GROUP BY {keys} "
            f"HAVING requests != 0 ORDER BY {keys}",
            parameters={"ws": workspace_id, "day": day},
        )
        return [dict(zip(result.column_names, values, strict=True)) for values in result.result_rows]

    def groups(self, workspace_id: str, start: date, end: date, keys: Sequence[str]) -> list[dict[str, Any]]:
        """Measures summed per `keys` (dimensions) over [start, end], for the waste findings."""
        cols = [k for k in keys if k in DIMENSIONS]
        result = self._client.query(
            f"SELECT {', '.join(cols)}, {', '.join(f'sum({m}) AS {m}' for m in MEASURES)}, "
            "uniqExact(day) AS days "
            f"FROM {self.db}.usage_daily WHERE workspace_id = {{ws:String}} AND day >= {{start:Date}} "
            f"AND day <= {{end:Date}} GROUP BY {', '.join(cols)} HAVING requests > 0 ORDER BY {', '.join(cols)}",
            parameters={"ws": workspace_id, "start": start, "end": end},
        )
        return [dict(zip(result.column_names, values, strict=True)) for values in result.result_rows]

    def first_day(self, workspace_id: str, start: date, end: date) -> date | None:
        result = self._client.query(
            f"SELECT min(day), count() FROM {self.db}.usage_daily WHERE workspace_id = {{ws:String}} "
            "AND day >= {start:Date} AND day <= {end:Date}",
            parameters={"ws": workspace_id, "start": start, "end": end},
        )
        first, count = result.result_rows[0]
        return first if count else None

    def days_stored_since(self, since: datetime) -> list[date]:
        """Event days that received rows stored at or after `since` (what reconcile must look at)."""
        result = self._client.query(
            f"SELECT DISTINCT toDate(ts) FROM {self.db}.usage_events WHERE stored_at >= {{since:DateTime64(3, 'UTC')}}",
            # A zone-less string read as UTC: portable whatever the server's (or chDB host's) time zone.
            parameters={"since": since.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]},
        )
        return sorted(r[0] for r in result.result_rows)

    def drift(self, start: date, end: date) -> list[tuple[Any, ...]]:
        """Rows that would make the rollup equal the deduplicated raw events over [start, end] (UTC days)."""
        keys = ", ".join(("workspace_id", "day", *DIMENSIONS, "cost_source"))
        raw = (
            f"SELECT workspace_id, toDate(ts) AS day, {', '.join(DIMENSIONS)}, cost_source, "
            "toInt64(count()) AS requests, toInt64(sum(input_tokens)) AS input_tokens, "
            "toInt64(sum(output_tokens)) AS output_tokens, toInt64(sum(cached_input_tokens)) AS "
            "cached_input_tokens, toInt64(sum(reasoning_tokens)) AS reasoning_tokens, "
            "toDecimal128(sum(cost_usd), 9) AS cost_usd, toInt64(sum(latency_ms)) AS latency_ms_sum "
            f"FROM {self.db}.usage_events FINAL WHERE toDate(ts) >= {{start:Date}} AND toDate(ts) <= "
            f"{{end:Date}} GROUP BY {keys}"
        )
        rolled = (
            f"SELECT {keys}, {', '.join(f'sum({m}) AS {m}' for m in MEASURES)} FROM {self.db}.usage_daily "
            f"WHERE day >= {{start:Date}} AND day <= {{end:Date}} GROUP BY {keys}"
        )
        diff = (
            f"SELECT {keys}, {', '.join(f'r.{m} - d.{m}' for m in MEASURES)} FROM ({raw}) AS r "
            f"FULL OUTER JOIN ({rolled}) AS d USING ({keys}) "
            f"WHERE {' OR '.join(f'r.{m} != d.{m}' for m in MEASURES)} "
            f"ORDER BY {keys} SETTINGS join_use_nulls = 0"
        )
        return [tuple(r) for r in self._client.query(diff, parameters={"start": start, "end": end}).result_rows]

    def reconcile(self, start: date, end: date, confirm_after: float = 0.0) -> int:
        """Make the rollup equal the deduplicated raw events over [start, end]; returns corrected groups.

        An insert in flight elsewhere (another replica on a ClickHouse server) can show its raw part before
        its view part; that looks like drift for a moment. With `confirm_after` > 0 only drift seen
        identically twice, that many seconds apart, is corrected. In one process the writer and reconcile
        share a lock (consumer.py), so no insert is ever in flight and 0 is exact."""
        corrections = self.drift(start, end)
        if corrections and confirm_after > 0:
            time.sleep(confirm_after)
            again = set(self.drift(start, end))
            corrections = [c for c in corrections if c in again]
        if corrections:
            self._client.insert(
                f"{self.db}.usage_daily",
                corrections,
                column_names=("workspace_id", "day", *DIMENSIONS, "cost_source", *MEASURES),
                # A correction may equal an earlier one byte for byte; it must still apply.
                settings={"insert_deduplicate": 0},
            )
        return len(corrections)
