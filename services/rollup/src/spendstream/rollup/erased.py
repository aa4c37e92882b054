"""End customers erased from a workspace, so that a replay of older Kafka records cannot store them again.

A customer-level erasure deletes the customer's rows, but `usage.events.v1` still holds their envelopes for
the topic's retention (days), readable with the workspace's data key (a customer has no key of its own to
shred). A consumer that replays the topic — a reset group, a new replica, a restore — would store them again.
So the erasure first records the subject here, and the consumer drops any event of a recorded subject that was
*ingested before* its erasure: events the customer sends afterwards are new data and are stored as usual.
Subjects are kept as SHA-256 of workspace and customer id, never the id itself; a workspace erasure removes
its markers together with everything else (the table leads with workspace_id), and by then its data key is
shredded, so nothing of it can be replayed anyway.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime

from clickhouse_connect.driver.client import Client

from spendstream.rollup.writes import StoredBatch


def subject_hash(workspace_id: str, customer_id: str) -> str:
    return hashlib.sha256(f"{workspace_id}\x00{customer_id}".encode()).hexdigest()


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class ErasedSubjects:
    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._db = database  # erased_subjects: schema.py, migration 6
        rows = client.query(
            f"SELECT workspace_id, subject_hash, max(erased_at) FROM {database}.erased_subjects "
            "GROUP BY workspace_id, subject_hash"
        ).result_rows
        self._erased: dict[tuple[str, str], datetime] = {(ws, h): _utc(at) for ws, h, at in rows}
        self._workspaces = {ws for ws, _ in self._erased}

    def add(self, workspace_id: str, customer_id: str, at: datetime) -> None:
        """Record before deleting: from here on, no replayed event of the subject is stored."""
        key = (workspace_id, subject_hash(workspace_id, customer_id))
        self._client.insert(
            f"{self._db}.erased_subjects",
            [(workspace_id, key[1], at)],
            column_names=("workspace_id", "subject_hash", "erased_at"),
        )
        self._erased[key] = max(at, self._erased.get(key, at))
        self._workspaces.add(workspace_id)

    def erased_since(self, workspace_id: str, customer_id: str, at: datetime) -> bool:
        """Whether the customer was erased at or after `at`: a record made before its erasure is not stored."""
        erased_at = self._erased.get((workspace_id, subject_hash(workspace_id, customer_id)))
        return erased_at is not None and _utc(at) <= erased_at

    def concern(self, workspace_ids: Iterable[str]) -> bool:
        """Whether any of these workspaces has an erased subject (its batches must then go through `admit`)."""
        return not self._workspaces.isdisjoint(workspace_ids)

    def admit(self, batch: StoredBatch) -> StoredBatch:
        """The batch with the events that may be stored: all but those of an erased subject, since the batch was
        ingested before its erasure."""
        workspace_id, ingested_at = batch.workspace_id, _utc(batch.ingested_at)
        kept = []
        for event in batch.events:
            customer = event.tags.get("customer_id", "")
            if customer:
                erased_at = self._erased.get((workspace_id, subject_hash(workspace_id, customer)))
                if erased_at is not None and ingested_at <= erased_at:
                    continue
            kept.append(event)
        return batch if len(kept) == len(batch.events) else batch.keeping(kept)
