"""The completeness ledger: per workspace and UTC day (of the events' timestamps), how many events each hop saw.

  accepted       ingest's tallies (`ingest.tallies.v1`, one per acknowledged envelope, published before the
                 answer): the events of its `202`s and raw-intake acceptances, deduplicated by batch id; an event
                 that two tallied envelopes carry (a retry after a lost answer, or while Redis was down) once;
  on_topic       what rollup read of `usage.events.v1`: per envelope, its events that no other envelope carried
                 before it, so each distinct event id once (erased customers' events it left out included);
  dead_lettered  events of the envelopes rollup could not read (their clear count; attributed to days by the
                 envelope's tally, else to its ingestion day);
  erased         events of erased customers (deleted by an erasure, or left out when read after one);
  stored_raw     `usage_events` (deduplicated: FINAL);
  in_rollup      `usage_daily` requests.

Three differences, each zero when nothing was lost: `topic` = accepted - on_topic - dead_lettered (acknowledged
but never read), `raw` = on_topic - erased - stored_raw (read but not stored), `rollup` = stored_raw - in_rollup
(stored but not summed; the reconciler repairs it). A negative `topic` difference means events on the topic that
ingest never confirmed (an envelope acknowledged after its request timed out, whose client did not retry).

Every row is keyed by workspace, day and batch id (a repeat by event id too), so a redelivered record writes
the same row again (ReplacingMergeTree, read with FINAL), and carries the envelope's ingestion time: the ledger
of the envelopes ingested before a cut-off (`ingested_before`) is settled once they had time to travel, which is
how completeness.py tells a loss from events still in flight.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from spendstream.common.records import IngestTally
from spendstream.rollup.writes import StoredBatch

STAGES = ("topic", "raw", "rollup")
COUNTS = ("accepted", "on_topic", "dead_lettered", "erased", "stored_raw", "in_rollup")
_READ_COLUMNS = ("workspace_id", "day", "batch_id", "ingested_at", "events", "dropped")
_REPEAT_COLUMNS = ("workspace_id", "day", "event_id", "batch_id", "ingested_at")
_ACCEPTED_COLUMNS = ("workspace_id", "day", "batch_id", "ingested_at", "events")


@dataclass(frozen=True, slots=True)
class DayLedger:
    """The counts of one workspace and day."""

    day: date
    accepted: int = 0
    on_topic: int = 0
    dead_lettered: int = 0
    erased: int = 0
    stored_raw: int = 0
    in_rollup: int = 0

    def gaps(self) -> dict[str, int]:
        """Events missing at each stage (negative: more there than the stage before it had)."""
        return {
            "topic": self.accepted - self.on_topic - self.dead_lettered,
            "raw": self.on_topic - self.erased - self.stored_raw,
            "rollup": self.stored_raw - self.in_rollup,
        }


def _day(at: datetime) -> date:
    return at.astimezone(UTC).date()


def read_rows(
    batches: Sequence[StoredBatch], stored: Mapping[tuple[str, str], str]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The ledger rows of a chunk of envelopes: per envelope and day, its events no other envelope carried first
    and its erased customers' events left out; and a row per carrier of each event two envelopes carry.

    `stored` maps the chunk's events already stored to the envelope that stored them: the same envelope
    (a redelivery) counts them as its own again, so a redelivered envelope writes the same row."""
    first: dict[tuple[str, str], str] = {}
    reads: list[tuple[Any, ...]] = []
    repeats: list[tuple[Any, ...]] = []
    for batch in batches:
        ws, own_id = batch.workspace_id, batch.batch_id
        own: Counter[date] = Counter()
        for event in batch.events:
            pair = (ws, event.event_id)
            carrier = stored.get(pair) or first.setdefault(pair, own_id)
            day = _day(event.timestamp)
            if carrier == own_id:
                own[day] += 1
            else:
                repeats.append((ws, day, event.event_id, own_id, batch.ingested_at))
                repeats.append((ws, day, event.event_id, carrier, batch.ingested_at))
        dropped = dict(batch.dropped)
        for day in sorted(own.keys() | dropped.keys()):
            reads.append((ws, day, own_id, batch.ingested_at, own[day], dropped.get(day, 0)))
    return reads, repeats


def _where(workspace_id: str | None, column: str = "day") -> str:
    ws = "workspace_id = {ws:String} AND " if workspace_id is not None else ""
    return f"{ws}{column} >= {{start:Date}} AND {column} <= {{end:Date}}"


def _cut(params: Mapping[str, Any]) -> str:
    """The condition on the envelopes' ingestion time (`cutoff`: at or before, `since`: at or after)."""
    cut = " AND ingested_at <= {cutoff:DateTime64(3, 'UTC')}" if "cutoff" in params else ""
    return cut + (" AND ingested_at >= {since:DateTime64(3, 'UTC')}" if "since" in params else "")


class Ledger:
    """Writes the ledger's rows (the writer, the tally consumer, the dead-letter path, customer erasure) and reads
    the counts per workspace and day."""

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self.db = database  # the ledger_* tables: schema.py, migration 10

    def since(self) -> datetime | None:
        """When the ledger started (schema version 10 applied): envelopes ingested before were never tallied."""
        started, count = self._client.query(
            f"SELECT toUnixTimestamp(min(applied_at)), count() FROM {self.db}.schema_migrations WHERE version = 10"
        ).result_rows[0]
        return datetime.fromtimestamp(int(started), UTC) if count else None

    def record_read(self, batches: Sequence[StoredBatch], stored: Mapping[tuple[str, str], str]) -> None:
        reads, repeats = read_rows(batches, stored)
        if reads:
            self._client.insert(f"{self.db}.ledger_read", reads, column_names=_READ_COLUMNS)
        if repeats:
            self._client.insert(f"{self.db}.ledger_repeats", repeats, column_names=_REPEAT_COLUMNS)

    def record_tallies(self, tallies: Sequence[IngestTally]) -> None:
        rows = [(t.workspace_id, day, t.batch_id, t.at, events) for t in tallies for day, events in t.days.items()]
        if rows:
            self._client.insert(f"{self.db}.ledger_accepted", rows, column_names=_ACCEPTED_COLUMNS)

    def record_dead(self, workspace_id: str, batch_id: str, ingested_at: datetime, events: int) -> None:
        self._client.insert(
            f"{self.db}.ledger_dead",
            [(workspace_id, _day(ingested_at), batch_id, ingested_at, events)],
            column_names=_ACCEPTED_COLUMNS,
        )

    def record_erased(self, workspace_id: str, customer_id: str, request_id: str) -> None:
        """Before a customer's events are deleted: how many, per envelope and day (a rerun after the delete
        finds none and leaves the first count)."""
        self._client.command(
            f"INSERT INTO {self.db}.ledger_erased (workspace_id, day, batch_id, ingested_at, request_id, events) "
            f"SELECT workspace_id, toDate(ts) AS day, batch_id, max(ingested_at), {{req:String}}, count() "
            f"FROM {self.db}.usage_events FINAL WHERE workspace_id = {{ws:String}} AND customer_id = {{c:String}} "
            "GROUP BY workspace_id, day, batch_id",
            parameters={"ws": workspace_id, "c": customer_id, "req": request_id},
        )

    def days(
        self,
        workspace_id: str | None,
        start: date,
        end: date,
        *,
        ingested_before: datetime | None = None,
        ingested_since: datetime | None = None,
        only: Collection[str] = COUNTS,
    ) -> dict[tuple[str, date], DayLedger]:
        """The counts per (workspace, day) over [start, end] (one workspace, or all of them), of the envelopes
        ingested within [`ingested_since`, `ingested_before`] when given (`in_rollup` is always whole: the
        rollup does not know its events' ingestion times). Counts not in `only` are left at zero."""
        params: dict[str, Any] = {"start": start, "end": end}
        if workspace_id is not None:
            params["ws"] = workspace_id
        if ingested_before is not None:
            params["cutoff"] = ingested_before
        if ingested_since is not None:
            params["since"] = ingested_since
        w, cut = _where(workspace_id), _cut(params)
        db = self.db
        queries: dict[str, Callable[[], dict[tuple[str, date], int]]] = {
            "accepted": lambda: self._per_day(
                f"SELECT workspace_id, day, sum(events) FROM {db}.ledger_accepted FINAL WHERE {w}{cut} "
                "GROUP BY workspace_id, day",
                params,
            ),
            "repeated": lambda: self._per_day(
                # Each event carried by several tallied envelopes was counted once per tally: all but one go.
                "SELECT workspace_id, day, sum(greatest(tallied, 1) - 1) FROM ("
                "SELECT workspace_id, day, event_id, countIf((day, batch_id) IN "
                f"(SELECT day, batch_id FROM {db}.ledger_accepted WHERE {w}{cut})) AS tallied "
                f"FROM {db}.ledger_repeats FINAL WHERE {w}{cut} GROUP BY workspace_id, day, event_id) "
                "GROUP BY workspace_id, day",
                params,
            ),
            "on_topic": lambda: self._per_day(
                f"SELECT workspace_id, day, sum(events + dropped) FROM {db}.ledger_read FINAL WHERE {w}{cut} "
                "GROUP BY workspace_id, day",
                params,
            ),
            "erased": lambda: self._per_day(
                "SELECT workspace_id, day, sum(n) FROM (SELECT workspace_id, day, batch_id, max(events) AS n FROM ("
                f"SELECT workspace_id, day, batch_id, events FROM {db}.ledger_erased WHERE {w}{cut} UNION ALL "
                f"SELECT workspace_id, day, batch_id, dropped FROM {db}.ledger_read FINAL WHERE {w}{cut} "
                "AND dropped > 0) GROUP BY workspace_id, day, batch_id) GROUP BY workspace_id, day",
                params,
            ),
            "stored_raw": lambda: self._per_day(
                f"SELECT workspace_id, toDate(ts) AS day, count() FROM {db}.usage_events FINAL "
                f"WHERE {_where(workspace_id, 'toDate(ts)')}{cut} GROUP BY workspace_id, day",
                params,
            ),
            "in_rollup": lambda: self._per_day(
                f"SELECT workspace_id, day, sum(requests) FROM {db}.usage_daily WHERE {w} GROUP BY workspace_id, day",
                params,
            ),
            "dead_lettered": lambda: self._dead(workspace_id, start, end, params),
        }
        wanted = {*only, "repeated"} if "accepted" in only else set(only)
        counts = {name: query() if name in wanted else {} for name, query in queries.items()}
        keys = set().union(*(c.keys() for c in counts.values()))
        return {
            (ws, day): DayLedger(
                day=day,
                accepted=counts["accepted"].get((ws, day), 0) - counts["repeated"].get((ws, day), 0),
                on_topic=counts["on_topic"].get((ws, day), 0),
                dead_lettered=counts["dead_lettered"].get((ws, day), 0),
                erased=counts["erased"].get((ws, day), 0),
                stored_raw=counts["stored_raw"].get((ws, day), 0),
                in_rollup=counts["in_rollup"].get((ws, day), 0),
            )
            for ws, day in sorted(keys)
        }

    def _per_day(self, sql: str, params: dict[str, Any]) -> dict[tuple[str, date], int]:
        return {(str(ws), day): int(n) for ws, day, n in self._client.query(sql, parameters=params).result_rows}

    def _dead(
        self, workspace_id: str | None, start: date, end: date, cut: Mapping[str, Any]
    ) -> dict[tuple[str, date], int]:
        """Dead-lettered events per day: by the envelope's tally (the events' own days) where there is one, else
        on the ingestion day. Dead letters are rare, so the join is done here."""
        params = {k: v for k, v in cut.items() if k in ("ws", "cutoff", "since")}
        # A dead row's day is its envelope's ingestion day, on or after its events' days (a day of slack for
        # clocks): every envelope that may hold events of [start, end] is looked at.
        params["start"] = start - timedelta(days=1)
        ws = "workspace_id = {ws:String} AND " if workspace_id is not None else ""
        dead = self._client.query(
            f"SELECT workspace_id, batch_id, day, events FROM {self.db}.ledger_dead FINAL "
            f"WHERE {ws}day >= {{start:Date}}{_cut(params)}",
            parameters=params,
        ).result_rows
        if not dead:
            return {}
        tallies = self._client.query(
            f"SELECT batch_id, day, events FROM {self.db}.ledger_accepted FINAL "
            "WHERE batch_id IN {ids:Array(String)}",
            parameters={"ids": [str(r[1]) for r in dead]},
        ).result_rows
        by_batch: dict[str, list[tuple[date, int]]] = {}
        for batch_id, day, events in tallies:
            by_batch.setdefault(str(batch_id), []).append((day, int(events)))
        out: Counter[tuple[str, date]] = Counter()
        for ws, batch_id, ingested_day, events in dead:
            for day, n in by_batch.get(str(batch_id), [(ingested_day, int(events))]):
                if start <= day <= end:
                    out[(str(ws), day)] += n
        return dict(out)
