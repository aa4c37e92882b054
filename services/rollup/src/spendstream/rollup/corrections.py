"""rollup's periodic corrections of `usage_daily` from the raw table, run as periodic work (service.periodic).

`repair` (every few seconds) reconciles the days that saw redelivered events; `reconcile` (every few minutes)
the recent days and every day that got events since the previous pass, over overlapping windows so rows
stored just before a pass are looked at again. A failed pass raises: the next one covers the same ground
(`reconcile` moves its window on only after a pass succeeded; repair's suspect days stay marked).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from spendstream.rollup import metrics
from spendstream.rollup.consumer import BatchWriter

log = logging.getLogger(__name__)


class Corrections:
    def __init__(
        self,
        writer: BatchWriter,
        *,
        recent_days: int,
        interval_seconds: float,
        confirm_after: float,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._writer = writer
        self._recent_days = recent_days
        self._interval = timedelta(seconds=interval_seconds)
        # Seconds a drift must persist before it is corrected (store.reconcile): 0 where no other writer exists.
        self._confirm_after = confirm_after
        self._now = now
        self._since = now() - timedelta(days=recent_days)

    async def reconcile(self) -> None:
        started = self._now() - self._interval
        fixed = await self._writer.reconcile(self._since, started.date(), self._recent_days, self._confirm_after)
        self._since = started
        metrics.CORRECTIONS.inc(fixed)

    async def repair(self) -> None:
        fixed = await self._writer.repair(self._confirm_after)
        if fixed:
            log.warning("rollup repaired from the raw table after a redelivery", extra={"groups": fixed})
        metrics.CORRECTIONS.inc(fixed)
