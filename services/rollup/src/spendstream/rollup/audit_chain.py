"""The audit log's hash chain: canonical bytes, links, the authenticated head, and the verifier.

Per workspace, record n carries `seq` = n and
    hash_n = SHA-256(hash_{n-1} || canonical_n),   hash_0 = 32 zero bytes,
where canonical_n is the stored record (every field, its `seq`, `stored_at` and its predecessor's `stored_at`
included) as sorted, compact JSON. Each stored row also carries mac_n = HMAC-SHA256(K, workspace || seq_n ||
hash_n) with K = crypto.derived_key(kek, "audit-chain"): the head as of that record, authenticated. Anyone can
recompute SHA-256, so hashes alone only show an accidental or partial change; the MACs show a rewritten chain,
since nobody without the KEK can make them.

A chain trimmed by retention starts at its first kept record: that record's stored `prev_hash` is the anchor,
and its stored `prev_stored_at` (inside its hash and MAC) must be old enough for the predecessor to have expired,
so a prefix deleted by hand is told apart from one retention dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

GENESIS = "0" * 64
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Why a record is bad, in the order the verifier checks a row:
#   missing         a sequence number is absent (a removed record, or a prefix removed before its retention ended)
#   duplicate       a sequence number is stored twice
#   out_of_order    the row does not link to the one before it (records swapped or moved)
#   altered         the row's content does not hash to its stored hash (a field changed)
#   unauthenticated the row's head MAC is wrong (the chain was rewritten without the KEK)
#   truncated       the authenticated head names records after the last stored one (the tail was removed)
Reason = Literal["missing", "duplicate", "out_of_order", "altered", "unauthenticated", "truncated"]

# The record's fields as the `audit_records` table stores them (schema.py, migration 13), in column order.
RECORD_FIELDS = (
    "workspace_id",
    "seq",
    "record_id",
    "at",
    "stored_at",
    "prev_stored_at",
    "service",
    "actor_kind",
    "actor_id",
    "action",
    "target",
    "outcome",
    "request_id",
    "client_hash",
    "detail",
)
CHAIN_FIELDS = ("prev_hash", "hash", "mac")
COLUMNS = (*RECORD_FIELDS, *CHAIN_FIELDS)


def utc(value: datetime) -> datetime:
    """A stored time as an aware UTC datetime (ClickHouse clients may hand back naive UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _time(value: datetime) -> str:
    return utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(row: dict[str, Any]) -> bytes:
    """The bytes a record is chained by: every record field, as sorted compact JSON (times to the microsecond)."""
    document: dict[str, Any] = {}
    for name in RECORD_FIELDS:
        value = row[name]
        if isinstance(value, datetime):
            value = _time(value)
        elif name == "detail":
            value = {str(k): str(v) for k, v in dict(value).items()}
        elif name == "seq":
            value = int(value)
        document[name] = value
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def link(prev_hash: str, row: dict[str, Any]) -> str:
    """hash_n from hash_{n-1} and record n."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical(row)).hexdigest()


def head_mac(key: bytes, workspace_id: str, seq: int, chain_hash: str) -> str:
    """The head (workspace, seq, hash) authenticated under the KEK-derived audit-chain key."""
    message = f"{workspace_id}\n{seq}\n{chain_hash}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Head:
    """A workspace's chain head as stored in `audit_heads` (migration 14)."""

    workspace_id: str
    seq: int
    hash: str
    mac: str
    stored_at: datetime


@dataclass(frozen=True)
class FirstBad:
    seq: int
    reason: Reason


@dataclass
class Verdict:
    """What `verify` found: the rows it read and the first bad record, if any."""

    records: int = 0
    first_bad: FirstBad | None = None
    first_seq: int | None = None  # the first kept record (> 1 once retention trimmed the chain)
    last_seq: int | None = None
    last_hash: str | None = None

    @property
    def ok(self) -> bool:
        return self.first_bad is None

    def jsonable(self) -> dict[str, Any]:
        bad = None if self.first_bad is None else {"seq": self.first_bad.seq, "reason": self.first_bad.reason}
        return {
            "ok": self.ok,
            "records": self.records,
            "first_bad": bad,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "head_hash": self.last_hash,
        }


@dataclass
class Verifier:
    """Checks one workspace's rows fed in `seq` order (page by page), then its stored head.

    `expired(prev_stored_at)` says whether a record stored then has left by retention: the first kept record
    may only follow a missing predecessor when that predecessor has expired."""

    key: bytes
    workspace_id: str
    expired: Callable[[datetime], bool]
    verdict: Verdict = field(default_factory=Verdict)
    _prev_hash: str | None = None
    _prev_seq: int = 0
    _prev_stored_at: datetime | None = None

    def _bad(self, seq: int, reason: Reason) -> None:
        if self.verdict.first_bad is None:
            self.verdict.first_bad = FirstBad(seq, reason)

    def feed(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self.verdict.records += 1
            if self.verdict.first_bad is None:
                self._check(row)

    def _check(self, row: dict[str, Any]) -> None:
        seq = int(row["seq"])
        if self._prev_hash is None:
            self.verdict.first_seq = seq
            anchored = seq == 1 and row["prev_hash"] == GENESIS and utc(row["prev_stored_at"]) == EPOCH
            # A trimmed chain: its first kept record's predecessor must have expired, else it was removed.
            trimmed = seq > 1 and self.expired(utc(row["prev_stored_at"]))
            if not (anchored or trimmed):
                return self._bad(1 if seq == 1 else seq - 1, "out_of_order" if seq == 1 else "missing")
            expected_prev = str(row["prev_hash"])
        else:
            if seq == self._prev_seq:
                return self._bad(seq, "duplicate")
            if seq != self._prev_seq + 1:
                return self._bad(self._prev_seq + 1, "missing")
            expected_prev = self._prev_hash
            if row["prev_hash"] != expected_prev or utc(row["prev_stored_at"]) != self._prev_stored_at:
                return self._bad(seq, "out_of_order")
        if link(expected_prev, row) != row["hash"]:
            return self._bad(seq, "altered")
        if not hmac.compare_digest(head_mac(self.key, self.workspace_id, seq, str(row["hash"])), str(row["mac"])):
            return self._bad(seq, "unauthenticated")
        self._prev_hash = str(row["hash"])
        self._prev_seq = seq
        self._prev_stored_at = utc(row["stored_at"])
        self.verdict.last_seq = seq
        self.verdict.last_hash = self._prev_hash

    def finish(self, head: Head | None) -> Verdict:
        """Check the stored head against the chain read: its MAC, and that no record after the last one is gone."""
        if self.verdict.first_bad is not None or head is None:
            return self.verdict
        if not hmac.compare_digest(head_mac(self.key, self.workspace_id, head.seq, head.hash), head.mac):
            self._bad(head.seq, "unauthenticated")
        elif self.verdict.last_seq is None:
            # Nothing kept: right only when retention dropped the whole chain, the head's record included.
            if not self.expired(utc(head.stored_at)):
                self._bad(head.seq, "truncated")
        elif head.seq > self.verdict.last_seq:
            self._bad(self.verdict.last_seq + 1, "truncated")
        # A head behind the last record is a crash between storing records and their head: every row carries
        # its own head MAC, which only rollup could have made, so those records stand (audit_log.py).
        return self.verdict
