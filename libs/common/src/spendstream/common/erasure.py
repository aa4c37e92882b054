"""The erasure saga's contract, which retention and every data owner (ingest, rollup, alerts, connectors) must
agree on.

retention decides *what* goes and *when* and sends a `DeletionCommand` on `retention.commands.v1`; each owner
deletes its own data idempotently, verifies that nothing is left, and answers with a `DeletionReport` on
`retention.reports.v1`; retention assembles the receipt on `audit.receipts.v1`. Reports and receipts hold
counts, table names and verification queries only: no personal data, no event content.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Owner = Literal["ingest", "rollup", "alerts", "connectors", "people"]
# Every owner there is; an installation waits for those it runs (retention's `erasure_owners`, default all).
OWNERS: tuple[Owner, ...] = ("ingest", "rollup", "alerts", "connectors", "people")
# awaiting_compaction: every owner reported done, but an old record of the tenant (its data key, a budget) is
# still readable on a compacted topic; the saga re-reads the topics until it is gone or the bound has passed.
State = Literal["requested", "executing", "awaiting_compaction", "verified", "failed"]
Origin = Literal["http", "cli", "kafka", "lifecycle"]
TERMINAL: frozenset[str] = frozenset({"verified", "failed"})
REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ErasureScope(BaseModel):
    """A whole workspace, or one end customer (`customer_id` tag) inside it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workspace_id: str
    customer_id: str | None = None


class DeletionCommand(BaseModel):
    """Sent by retention; owners must treat a repeated command (same request_id) as a no-op that reports again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str
    scope: ErasureScope
    issued_at: datetime


class StoreCount(BaseModel):
    """Rows (or keys, or records) of one store before and after the deletion."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    store: str  # e.g. "clickhouse:usage_events", "redis:seen", "kafka:ingest.apikeys.v1"
    before: int
    after: int


class Verification(BaseModel):
    """A check that found nothing left: what was asked (no values of personal data) and what it returned."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    store: str
    query: str
    result: int


class DeletionReport(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str
    owner: Owner
    scope: ErasureScope
    status: Literal["done", "failed"]
    counts: list[StoreCount]
    verifications: list[Verification]
    reason: str | None = None  # a code, on failure
    finished_at: datetime

    @classmethod
    def verified(
        cls, command: DeletionCommand, owner: Owner, counts: list[StoreCount], verifications: list[Verification]
    ) -> DeletionReport:
        """The owner's report: done when every verification found nothing left, else failed."""
        left = any(v.result for v in verifications)
        return cls(
            request_id=command.request_id,
            owner=owner,
            scope=command.scope,
            status="failed" if left else "done",
            counts=counts,
            verifications=verifications,
            reason="data_left_after_delete" if left else None,
            finished_at=datetime.now(UTC),
        )


class LifecycleEvent(BaseModel):
    """Account lifecycle on `retention.lifecycle.v1`, keyed by workspace_id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workspace_id: str
    kind: Literal["cancelled", "reactivated", "deleted"]
    at: datetime


class OwnerReceipt(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    owner: Owner
    status: Literal["done", "failed"]
    counts: list[StoreCount]
    verifications: list[Verification]
    reason: str | None
    finished_at: datetime


class CompactionCheck(BaseModel):
    """retention's own verification: the compacted topics holding tenant keys or content, read from the earliest
    offset, hold no readable record of the subject (only tombstones and the workspace's `deleted` marker)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bound_seconds: float  # the stated bound: old values of these topics are gone within it
    topics: list[str]
    records_left: int
    checked_at: datetime


class Receipt(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    v: Literal[1] = 1
    request_id: str
    workspace_id: str
    subject: Literal["workspace", "customer"]
    customer_hash: str | None
    subject_key_id: str | None  # the KEK id the hash was keyed with
    origin: str
    requested_by: str
    requested_at: datetime
    completed_at: datetime
    status: Literal["verified", "failed"]
    reason: str | None
    rows_before: int
    rows_after: int
    owners: list[OwnerReceipt]
    compaction: CompactionCheck | None = None

    def owner_names(self) -> list[str]:
        return [o.owner for o in self.owners]


def request_key(workspace_id: str, request_id: str) -> str:
    """The key of a request on `retention.requests.v1` and of its receipt on `audit.receipts.v1`."""
    # A request id cannot hold "/", so the key names exactly one (workspace, request id) pair.
    return f"{workspace_id}/{request_id}"


class DeletionRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    request_id: str
    workspace_id: str
    customer_id: str | None = None  # raw only while the request runs; None in the final record
    customer_hash: str | None = None
    origin: Origin = "kafka"
    requested_by: str  # an API key id, "cli", "lifecycle:cancelled", a tool's name: never a key or a person
    requested_at: datetime
    state: State = "requested"
    revision: int = 0
    attempts: int = 0
    commanded_at: datetime | None = None
    owners_done_at: datetime | None = None  # when every owner had reported done (awaiting_compaction since)
    updated_at: datetime | None = None
    reports: dict[str, DeletionReport] = Field(default_factory=dict)  # owner -> latest report (while running)
    reason: str | None = None
    receipt: Receipt | None = None
    # A workspace erasure asked over HTTP: SHA-256 (hex) of the receipt token shown once in the answer, which
    # reads the receipt after the workspace's keys and sessions are gone. Never the token itself.
    receipt_token_hash: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @field_validator("request_id")
    @classmethod
    def _id_chars(cls, value: str) -> str:
        if not REQUEST_ID.match(value):
            raise ValueError("request_id must match [A-Za-z0-9_-]{1,64}")
        return value

    @property
    def key(self) -> str:
        return request_key(self.workspace_id, self.request_id)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL

    def scope(self) -> ErasureScope:
        return ErasureScope(workspace_id=self.workspace_id, customer_id=self.customer_id)
