"""The audit log's store: records of `audit.records.v1` chained per workspace into ClickHouse, read and verified.

Exactly-once chaining over at-least-once delivery. Kafka keys records by workspace, so one partition holds a
workspace's records in order and one consumer chains them. For each batch, `store`:
  1. reads each workspace's last stored record (seq, hash, stored_at) from `audit_records` itself, never from a
     cache: the table is the truth after any crash (the authenticated head only says where to start looking,
     and is the anchor once retention dropped every record of the workspace);
  2. drops records whose record_id is already stored (a redelivery: the batch was stored, then the process died
     before Kafka committed it) or repeated within the batch;
  3. chains the rest from that last record and inserts them, one insert per month partition in order (an insert
     into one partition is one part, atomic); a crash mid-way leaves a stored prefix, and the redelivered batch
     skips that prefix in step 2 and chains the remainder after it: no record twice, no gap;
  4. then writes each workspace's head (seq, hash, HMAC) to `audit_heads`. A crash before this step leaves the
     head behind the last record; each row carries its own head MAC, so verification accepts the records and
     the next batch moves the head on.
The offset is committed only after `store` returned (NACK_ON_ERROR in app.py).
"""

from __future__ import annotations

import calendar
import hmac
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from spendstream.common.records import AuditRecord
from spendstream.rollup.audit_chain import (
    COLUMNS,
    EPOCH,
    GENESIS,
    Head,
    Verdict,
    Verifier,
    head_mac,
    link,
    utc,
)

MAX_PAGE = 1000
VERIFY_PAGE = 5000
# What the API and the export show of a row: the record, its place in the chain and its link (not the MAC).
SHOWN = tuple(c for c in COLUMNS if c != "mac")


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` plus whole months, the day clamped to the month's end (as ClickHouse's INTERVAL n MONTH)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Filters:
    """The filters of GET /v1/audit and its export, all optional."""

    start: datetime | None = None
    end: datetime | None = None
    action: str | None = None
    actor_id: str | None = None
    outcome: str | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        clauses, params = [], {}
        if self.start is not None:
            clauses.append("at >= {start:DateTime64(6, 'UTC')}")
            params["start"] = self.start
        if self.end is not None:
            clauses.append("at < {end:DateTime64(6, 'UTC')}")
            params["end"] = self.end
        for name in ("action", "actor_id", "outcome"):
            value = getattr(self, name)
            if value is not None:
                clauses.append(f"{name} = {{{name}:String}}")
                params[name] = value
        return "".join(f" AND {c}" for c in clauses), params


class AuditLog:
    """rollup's audit table: chained writes (one consumer per workspace's partition), reads and verification."""

    def __init__(
        self,
        client: Client,
        database: str,
        chain_key: bytes,
        retention_months: int = 12,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self.db = database
        self._key = chain_key
        self._retention = retention_months
        self._now = now

    # -- writing --------------------------------------------------------------------------------------------

    def _heads(self, workspaces: list[str]) -> dict[str, Head]:
        """The workspaces' stored heads whose MAC holds (a forged head is no place to chain from)."""
        rows = self._client.query(
            f"SELECT workspace_id, seq, hash, mac, stored_at FROM {self.db}.audit_heads "
            "WHERE workspace_id IN {ws:Array(String)} ORDER BY workspace_id, seq DESC LIMIT 1 BY workspace_id",
            parameters={"ws": workspaces},
        ).result_rows
        heads = [Head(str(ws), int(seq), str(h), str(mac), utc(at)) for ws, seq, h, mac, at in rows]
        return {
            h.workspace_id: h
            for h in heads
            if hmac.compare_digest(head_mac(self._key, h.workspace_id, h.seq, h.hash), h.mac)
        }

    def _last_stored(self, workspaces: list[str]) -> dict[str, tuple[int, str, datetime]]:
        """Each workspace's last record: read from the table from its head on (a few rows, by the sort key); the
        head itself when retention dropped every record (the chain goes on from it)."""
        heads = self._heads(workspaces)
        clauses: list[str] = []
        params: dict[str, Any] = {}
        for i, ws in enumerate(workspaces):
            params[f"w{i}"] = ws
            head = heads.get(ws)
            if head is None:
                clauses.append(f"workspace_id = {{w{i}:String}}")
            else:
                clauses.append(f"(workspace_id = {{w{i}:String}} AND seq >= {{s{i}:UInt64}})")
                params[f"s{i}"] = head.seq
        rows = self._client.query(
            f"SELECT workspace_id, seq, hash, stored_at FROM {self.db}.audit_records WHERE {' OR '.join(clauses)} "
            "ORDER BY workspace_id, seq DESC LIMIT 1 BY workspace_id",
            parameters=params,
        ).result_rows
        last = {h.workspace_id: (h.seq, h.hash, h.stored_at) for h in heads.values()}
        last.update({str(ws): (int(seq), str(h), utc(at)) for ws, seq, h, at in rows})
        return last

    def _already_stored(self, workspaces: list[str], record_ids: list[str]) -> set[str]:
        rows = self._client.query(
            f"SELECT record_id FROM {self.db}.audit_records "
            "WHERE workspace_id IN {ws:Array(String)} AND record_id IN {ids:Array(String)}",
            parameters={"ws": workspaces, "ids": record_ids},
        ).result_rows
        return {str(r[0]) for r in rows}

    def chain(self, records: Sequence[AuditRecord]) -> tuple[list[dict[str, Any]], list[Head]]:
        """The rows and heads that storing `records` adds (redeliveries and repeats left out), in order."""
        if not records:
            return [], []
        workspaces = sorted({r.workspace_id for r in records})
        stored = self._already_stored(workspaces, sorted({r.record_id for r in records}))
        last = self._last_stored(workspaces)
        now = self._now()
        rows: list[dict[str, Any]] = []
        heads: dict[str, Head] = {}
        for record in records:
            if record.record_id in stored:
                continue
            stored.add(record.record_id)
            seq, prev_hash, prev_stored_at = last.get(record.workspace_id, (0, GENESIS, EPOCH))
            # Never before the previous record: stored_at orders retention's trimming, which must keep a suffix.
            stored_at = max(now, prev_stored_at)
            row: dict[str, Any] = {
                "workspace_id": record.workspace_id,
                "seq": seq + 1,
                "record_id": record.record_id,
                "at": utc(record.at),
                "stored_at": stored_at,
                "prev_stored_at": prev_stored_at,
                "service": record.service,
                "actor_kind": record.actor_kind,
                "actor_id": record.actor_id,
                "action": record.action,
                "target": record.target,
                "outcome": record.outcome,
                "request_id": record.request_id,
                "client_hash": record.client_hash,
                "detail": dict(record.detail),
                "prev_hash": prev_hash,
            }
            row["hash"] = link(prev_hash, row)
            row["mac"] = head_mac(self._key, record.workspace_id, seq + 1, row["hash"])
            rows.append(row)
            last[record.workspace_id] = (seq + 1, row["hash"], stored_at)
            heads[record.workspace_id] = Head(record.workspace_id, seq + 1, row["hash"], row["mac"], stored_at)
        return rows, list(heads.values())

    def store(self, records: Sequence[AuditRecord]) -> int:
        """Chain and store `records` (a batch of one or more partitions, in offset order); the number added."""
        rows, heads = self.chain(records)
        # A workspace's stored_at never decreases, so month partitions in order keep each workspace's rows a prefix.
        for _, group in itertools.groupby(rows, key=lambda r: (r["stored_at"].year, r["stored_at"].month)):
            self._insert_rows(list(group))
        if heads:
            self.insert_heads(heads)
        return len(rows)

    def _insert_rows(self, rows: list[dict[str, Any]]) -> None:
        self._client.insert(
            f"{self.db}.audit_records", [[r[c] for c in COLUMNS] for r in rows], column_names=list(COLUMNS)
        )

    def insert_heads(self, heads: list[Head]) -> None:
        self._client.insert(
            f"{self.db}.audit_heads",
            [(h.workspace_id, h.seq, h.hash, h.mac, h.stored_at) for h in heads],
            column_names=("workspace_id", "seq", "hash", "mac", "stored_at"),
        )

    # -- reading --------------------------------------------------------------------------------------------

    def page(
        self, workspace_id: str, filters: Filters, before: int | None, limit: int
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Newest first: up to `limit` records with seq < `before`; and the cursor of the next page, if any."""
        where, params = filters.where()
        if before is not None:
            where += " AND seq < {before:UInt64}"
            params["before"] = before
        rows = list(
            self._client.query(
                f"SELECT {', '.join(SHOWN)} FROM {self.db}.audit_records WHERE workspace_id = {{ws:String}}{where} "
                "ORDER BY seq DESC LIMIT {limit:UInt32}",
                parameters={**params, "ws": workspace_id, "limit": limit + 1},
            ).named_results()
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (int(rows[-1]["seq"]) if more else None)

    def ascending(
        self,
        workspace_id: str,
        filters: Filters = Filters(),
        page_rows: int = VERIFY_PAGE,
        columns: Sequence[str] = SHOWN,
    ) -> Iterator[list[dict[str, Any]]]:
        """Every matching record in seq order, page by page (keyset paging on seq)."""
        where, params = filters.where()
        names = list(dict.fromkeys([*columns, "seq", "record_id"]))
        after: tuple[int, str] = (-1, "")
        while True:
            # (seq, record_id): a seq stored twice (which verification reports) still reads both rows.
            rows = list(
                self._client.query(
                    f"SELECT {', '.join(names)} FROM {self.db}.audit_records WHERE workspace_id = {{ws:String}} "
                    f"AND (toInt64(seq), record_id) > ({{seq:Int64}}, {{rid:String}}){where} "
                    "ORDER BY seq, record_id LIMIT {limit:UInt32}",
                    parameters={**params, "ws": workspace_id, "seq": after[0], "rid": after[1], "limit": page_rows},
                ).named_results()
            )
            if rows:
                yield rows
            if len(rows) < page_rows:
                return
            after = (int(rows[-1]["seq"]), str(rows[-1]["record_id"]))

    def head(self, workspace_id: str) -> Head | None:
        rows = self._client.query(
            f"SELECT seq, hash, mac, stored_at FROM {self.db}.audit_heads WHERE workspace_id = {{ws:String}} "
            "ORDER BY seq DESC LIMIT 1",
            parameters={"ws": workspace_id},
        ).result_rows
        if not rows:
            return None
        seq, chain_hash, mac, stored_at = rows[0]
        return Head(workspace_id, int(seq), str(chain_hash), str(mac), utc(stored_at))

    # -- verification ---------------------------------------------------------------------------------------

    def expired(self, stored_at: datetime) -> bool:
        """Whether retention has dropped (or may drop) a record stored at `stored_at` by now (its TTL passed)."""
        return add_months(utc(stored_at).replace(microsecond=0), self._retention) <= self._now()

    def verify(self, workspace_id: str, page_rows: int = VERIFY_PAGE) -> Verdict:
        """Walk the workspace's chain from its first kept record and check its head; names the first bad record."""
        # The head first: a record stored after it was read is then simply past the head.
        head = self.head(workspace_id)
        verifier = Verifier(self._key, workspace_id, self.expired)
        for rows in self.ascending(workspace_id, page_rows=page_rows, columns=COLUMNS):
            verifier.feed(rows)
        return verifier.finish(head)
