"""In-memory stand-ins for what BatchWriter talks to: the store (writes and repairs), the key ring, the broker."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from spendstream.common.tenants import KeyUnavailable
from spendstream.rollup.writes import Inserted, StoredBatch


class MemoryStore:
    """What ClickHouse holds, as a dict of stored (workspace_id, event_id) and requests per (workspace, day).
    It fails its next `failures` inserts, as a ClickHouse that went away."""

    def __init__(self, failures: int = 0) -> None:
        self.events: dict[tuple[str, str], date] = {}
        self.daily: Counter[tuple[str, date]] = Counter()
        self.failures, self.inserts, self.reconciled = failures, 0, list[date]()

    def encode(self, batches: Sequence[StoredBatch]) -> bytes:
        return b""

    def insert_new(self, batches: Sequence[StoredBatch], body: bytes) -> Inserted:
        self.inserts += 1
        if self.failures:
            self.failures -= 1
            raise ConnectionError("clickhouse went away")
        before, repeated = set(self.events), set()
        for batch in batches:
            for event in batch.events:
                key, day = (batch.workspace_id, event.event_id), event.timestamp.astimezone(UTC).date()
                if key in before:
                    repeated.add(day)
                elif key not in self.events:
                    self.events[key] = day
                    self.daily[batch.workspace_id, day] += 1
        return Inserted(new=len(self.events) - len(before), repeated_days=frozenset(repeated))

    def days_stored_since(self, since: datetime) -> list[date]:
        return sorted(set(self.events.values()))  # no storage times kept: every day with events

    def reconcile(self, start: date, end: date, confirm_after: float = 0.0) -> int:
        self.reconciled.append(start)
        return 0


class Keys:
    """A key ring holding one data key per workspace (version 1); any other is shredded or unknown, except those
    of `foreign`, wrapped by another KEK (KeyUnavailable, as the real ring raises it)."""

    def __init__(self, keys: dict[str, bytes], foreign: tuple[str, ...] = ()) -> None:
        self.keys = keys
        self.foreign = foreign

    async def data_key(self, workspace_id: str, version: int) -> bytes | None:
        if workspace_id in self.foreign:
            raise KeyUnavailable(workspace_id, "kek-other")
        return self.keys.get(workspace_id) if version == 1 else None


class Published:
    """A broker that keeps what is published: (message, topic, key)."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, str, bytes]] = []

    async def publish(self, message: bytes, topic: str, *, key: bytes) -> Any:
        self.messages.append((message, topic, key))
