"""The sweep: every budget evaluated again on a timer, and reconciled with rollup's figures now and then.

The consumer evaluates only the budgets its events touch; the sweep (run as periodic work, woken early when a
budget changes) picks up what no event brings: a lowered budget, a forecast, an alert whose claimer crashed
before publishing. It reconciles every budget with rollup every `reconcile_interval_seconds`, and a budget
that just changed at once. A failed round raises; the next one covers everything again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from spendstream.alerts.budgets import BudgetBook
from spendstream.alerts.reconcile import Reconciler
from spendstream.alerts.thresholds import Evaluator
from spendstream.common.records import BudgetRecord


class ChangedBudgets:
    """The budget table's change listener: wakes the sweep, which then reconciles the changed budgets."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self.wake = asyncio.Event()

    def __call__(self, budget_id: str, _: BudgetRecord | None) -> None:
        self._ids.add(budget_id)
        self.wake.set()

    def take(self) -> set[str]:
        taken, self._ids = self._ids, set()
        return taken


class Sweep:
    def __init__(
        self,
        book: BudgetBook,
        evaluator: Evaluator,
        reconciler: Reconciler,
        changes: ChangedBudgets,
        clock: Callable[[], datetime],
        reconcile_interval_seconds: float,
    ) -> None:
        self._book = book
        self._evaluator = evaluator
        self._reconciler = reconciler
        self._changes = changes
        self._clock = clock
        self._reconcile_interval = reconcile_interval_seconds
        self._last_reconcile = float("-inf")

    async def run_once(self) -> None:
        loop = asyncio.get_running_loop()
        changed = self._changes.take()
        reconcile_all = loop.time() - self._last_reconcile >= self._reconcile_interval
        now = self._clock()
        for budget in self._book.all():
            if self._reconciler.enabled and (reconcile_all or budget.budget_id in changed):
                await self._reconciler.budget(budget, now)
            await self._evaluator.evaluate(budget, now)
        if reconcile_all:
            self._last_reconcile = loop.time()
