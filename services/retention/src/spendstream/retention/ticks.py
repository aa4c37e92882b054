"""The clock's work, one tick: due schedules become deletion requests, and overdue owners are chased.

Run as periodic work every `tick_seconds`, and at once when a lifecycle record arrives (a `deleted` workspace
is due immediately). Ticks never overlap: a tick woken early waits for the one in progress.
"""

from __future__ import annotations

import asyncio

from spendstream.common.erasure import DeletionRequest
from spendstream.retention.clock import Clock
from spendstream.retention.saga import Coordinator
from spendstream.retention.schedules import Schedules


class Ticker:
    def __init__(self, schedules: Schedules, coordinator: Coordinator, clock: Clock) -> None:
        self._schedules = schedules
        self._coordinator = coordinator
        self._clock = clock
        self._lock = asyncio.Lock()

    async def tick(self) -> list[str]:
        """Turn due schedules into requests and chase overdue owners; returns the request ids it submitted."""
        async with self._lock:
            submitted = []
            await self._schedules.table.catch_up()
            for schedule in self._schedules.due(self._clock.now()):
                if self._coordinator.get(schedule.workspace_id, schedule.request_id) is not None:
                    continue
                request = DeletionRequest(
                    request_id=schedule.request_id,
                    workspace_id=schedule.workspace_id,
                    origin="lifecycle",
                    requested_by=f"lifecycle:{schedule.cause}",
                    requested_at=self._clock.now(),
                )
                _, created = await self._coordinator.submit(request)
                if created:
                    submitted.append(schedule.request_id)
            await self._coordinator.tick()
            return submitted
