"""The sweep, in memory: every budget evaluated each round, every budget reconciled on the reconcile interval,
and a changed budget reconciled at once (the change also wakes the sweep)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

import pytest

from spendstream.alerts.budgets import BudgetBook
from spendstream.alerts.reconcile import Reconciler
from spendstream.alerts.sweep import ChangedBudgets, Sweep
from spendstream.alerts.thresholds import Evaluator
from spendstream.common.records import BudgetRecord
from tests.alerts.helpers import budget

NOW = datetime(2026, 3, 10, tzinfo=UTC)


class Book:
    def __init__(self, budgets: list[BudgetRecord]) -> None:
        self.budgets = budgets

    def all(self) -> list[BudgetRecord]:
        return self.budgets


class Calls:
    def __init__(self, enabled: bool = True, fail: bool = False) -> None:
        self.enabled = enabled
        self.fail = fail
        self.reconciled: list[str] = []
        self.evaluated: list[str] = []

    async def budget(self, record: BudgetRecord, now: datetime) -> None:
        if self.fail:
            raise ConnectionError("rollup down")
        self.reconciled.append(record.budget_id)

    async def evaluate(self, record: BudgetRecord, now: datetime) -> list[object]:
        self.evaluated.append(record.budget_id)
        return []


def _sweep(budgets: list[BudgetRecord], calls: Calls, changes: ChangedBudgets, interval: float) -> Sweep:
    return Sweep(
        cast(BudgetBook, Book(budgets)),
        cast(Evaluator, calls),
        cast(Reconciler, calls),
        changes,
        lambda: NOW,
        interval,
    )


async def test_the_first_round_reconciles_everything_then_only_what_changed_until_the_interval() -> None:
    a, b = budget(), budget()
    calls, changes = Calls(), ChangedBudgets()
    sweep = _sweep([a, b], calls, changes, interval=3600)
    await sweep.run_once()
    assert sorted(calls.reconciled) == sorted([a.budget_id, b.budget_id])
    calls.reconciled.clear()
    await sweep.run_once()
    assert calls.reconciled == []
    changes(b.budget_id, b)
    assert changes.wake.is_set()
    await sweep.run_once()
    assert calls.reconciled == [b.budget_id]
    assert calls.evaluated.count(a.budget_id) == 3


async def test_a_failed_reconcile_raises_and_the_next_round_reconciles_everything_again() -> None:
    a = budget()
    calls = Calls(fail=True)
    sweep = _sweep([a], calls, ChangedBudgets(), interval=3600)
    with pytest.raises(ConnectionError):
        await sweep.run_once()
    calls.fail = False
    await sweep.run_once()
    assert calls.reconciled == [a.budget_id]
