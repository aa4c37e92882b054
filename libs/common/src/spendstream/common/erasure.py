"""The erasure saga's contract, which retention and every data owner (ingest, rollup, alerts) must agree on.

retention decides *what* goes and *when* and sends a `DeletionCommand` on `retention.commands.v1`; each owner
deletes its own data idempotently, verifies that nothing is left, and answers with a `DeletionReport` on
`retention.reports.v1`; retention assembles the receipt on `audit.receipts.v1`. Reports and receipts hold
counts, table names and verification queries only: no personal data, no event content.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

Owner = Literal["ingest", "rollup", "alerts"]
OWNERS: tuple[Owner, ...] = ("ingest", "rollup", "alerts")


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


class LifecycleEvent(BaseModel):
    """Account lifecycle on `retention.lifecycle.v1`, keyed by workspace_id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workspace_id: str
    kind: Literal["cancelled", "reactivated", "deleted"]
    at: datetime
