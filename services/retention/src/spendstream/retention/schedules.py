"""Deletion schedules, derived from the account lifecycle on the compacted `retention.lifecycle.v1`.

The topic keeps the latest lifecycle event per workspace, so the schedule survives any restart without a
store of its own: `cancelled` at T schedules full deletion at T + grace (30 days); `reactivated` clears it;
`deleted` schedules it at once. A due schedule becomes a deletion request whose id is derived from the
event, so ticking twice, or after a restart, submits it once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from spendstream.common.erasure import LifecycleEvent
from spendstream.common.kafka import CompactedTable
from spendstream.common.topics import LIFECYCLE
from spendstream.retention.settings import RetentionSettings


@dataclass(frozen=True, slots=True)
class Schedule:
    workspace_id: str
    due_at: datetime
    cause: str  # the lifecycle event kind
    request_id: str


def lifecycle_request_id(event: LifecycleEvent) -> str:
    digest = hashlib.sha256(f"{event.workspace_id}|{event.kind}|{event.at.isoformat()}".encode()).hexdigest()
    return f"lc_{digest[:40]}"


class Schedules:
    def __init__(
        self, settings: RetentionSettings, on_change: Callable[[str, LifecycleEvent | None], None] | None = None
    ) -> None:
        self._grace = timedelta(days=settings.cancellation_grace_days)
        self.table: CompactedTable[LifecycleEvent] = CompactedTable(settings, LIFECYCLE, on_change=on_change)

    def of(self, event: LifecycleEvent) -> Schedule | None:
        if event.kind == "reactivated":
            return None
        due = event.at + self._grace if event.kind == "cancelled" else event.at
        return Schedule(event.workspace_id, due, event.kind, lifecycle_request_id(event))

    def all(self) -> list[Schedule]:
        return [s for e in self.table.values() if (s := self.of(e)) is not None]

    def due(self, now: datetime) -> list[Schedule]:
        return [s for s in self.all() if s.due_at <= now]
