"""rollup's periodic corrections, in memory: the reconcile window moves on only after a pass succeeded, and
windows overlap by one interval so rows stored just before a pass are looked at again."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import cast

import pytest

from spendstream.rollup.consumer import BatchWriter
from spendstream.rollup.corrections import Corrections

START = datetime(2026, 3, 10, 12, tzinfo=UTC)


class Writer:
    def __init__(self) -> None:
        self.calls: list[tuple[datetime, date, int, float]] = []
        self.fail = False

    async def reconcile(self, since: datetime, today: date, recent_days: int, confirm_after: float = 0.0) -> int:
        self.calls.append((since, today, recent_days, confirm_after))
        if self.fail:
            raise TimeoutError
        return 0

    async def repair(self, confirm_after: float = 0.0) -> int:
        return 0


async def test_the_window_moves_on_only_after_a_pass_succeeded() -> None:
    clock = [START]
    writer = Writer()
    corrections = Corrections(
        cast(BatchWriter, writer), recent_days=2, interval_seconds=300, confirm_after=2.0, now=lambda: clock[0]
    )
    clock[0] = START + timedelta(minutes=5)
    await corrections.reconcile()
    assert writer.calls[-1] == (START - timedelta(days=2), START.date(), 2, 2.0)
    clock[0] = START + timedelta(minutes=10)
    writer.fail = True
    with pytest.raises(TimeoutError):
        await corrections.reconcile()
    writer.fail = False
    clock[0] = START + timedelta(minutes=15)
    await corrections.reconcile()
    # The failed pass did not move the window: the next one starts where the last good one started.
    assert writer.calls[-1][0] == writer.calls[-2][0] == START
