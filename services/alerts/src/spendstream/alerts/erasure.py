"""alerts as an erasure owner: on a `DeletionCommand`, delete budgets, counters, markers and delivery logs.

Workspace scope: every budget of the workspace (tombstones on `alerts.budgets.v1`) and every alerts key of the
workspace in Redis. Customer scope: the budgets scoped to that `customer_id`, their markers and delivery logs,
and the spend counters of that customer (found by the keyed hash, never by the id). Then it verifies that
nothing is left and returns a `DeletionReport` (owner "alerts"; `erasure_owner.serve_erasure` publishes it).
Idempotent: a repeated command deletes nothing more and reports again with zero before and after. Alert
records already on `alerts.fired.v1` hold ids and numbers only and age out with the topic (30 days).
A deleted budget's keys go the same way (`forget`).
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis.asyncio as aioredis

from spendstream.alerts.budgets import BudgetBook
from spendstream.alerts.keyspace import KeySpace
from spendstream.common.erasure import DeletionCommand, DeletionReport, Owner, StoreCount, Verification
from spendstream.common.records import BudgetRecord
from spendstream.common.topics import BUDGETS


class Eraser:
    owner: Owner = "alerts"

    def __init__(self, redis: aioredis.Redis, keys: KeySpace, book: BudgetBook) -> None:
        self._redis = redis
        self._keys = keys
        self._book = book

    def _budgets(self, command: DeletionCommand) -> list[BudgetRecord]:
        scope = command.scope
        budgets = self._book.of_workspace(scope.workspace_id)
        if scope.customer_id is None:
            return budgets
        return [
            b
            for b in budgets
            if b.scope is not None and b.scope.tag == "customer_id" and b.scope.value == scope.customer_id
        ]

    def _patterns(self, command: DeletionCommand, budgets: list[BudgetRecord]) -> list[str]:
        ws = command.scope.workspace_id
        if command.scope.customer_id is None:
            return [self._keys.workspace_pattern(ws)]
        scope = self._keys.scope(ws, "customer_id", command.scope.customer_id)
        return [self._keys.scope_pattern(ws, scope), *(self._keys.budget_pattern(ws, b.budget_id) for b in budgets)]

    async def _scan(self, patterns: list[str]) -> list[bytes]:
        found: list[bytes] = []
        for pattern in patterns:
            async for key in self._redis.scan_iter(match=pattern, count=10_000):
                found.append(key)
        return found

    async def forget(self, budget: BudgetRecord) -> None:
        """A deleted budget's markers and delivery log go with it."""
        found = await self._scan([self._keys.budget_pattern(budget.workspace_id, budget.budget_id)])
        for start in range(0, len(found), 500):
            await self._redis.delete(*found[start : start + 500])

    async def erase(self, command: DeletionCommand) -> DeletionReport:
        """Delete (if anything is left) and verify; a repeated command finds zero before and reports again."""
        await self._book.table.catch_up()
        budgets = self._budgets(command)
        # Budget ids are remembered in the key patterns before the tombstones remove them from the table.
        patterns = self._patterns(command, budgets)
        redis_before = await self._scan(patterns)
        for budget in budgets:
            await self._book.delete(budget.budget_id)
        for start in range(0, len(redis_before), 500):
            await self._redis.delete(*redis_before[start : start + 500])
        budgets_after = self._budgets(command)
        redis_after = await self._scan(patterns)
        status = "done" if not budgets_after and not redis_after else "failed"
        target = "customer" if command.scope.customer_id is not None else "workspace"
        report = DeletionReport(
            request_id=command.request_id,
            owner="alerts",
            scope=command.scope,
            status=status,
            counts=[
                StoreCount(store=f"kafka:{BUDGETS.name}", before=len(budgets), after=len(budgets_after)),
                StoreCount(store="redis:alerts", before=len(redis_before), after=len(redis_after)),
            ],
            verifications=[
                Verification(
                    store=f"kafka:{BUDGETS.name}",
                    query=f"budgets of the {target} in the replayed table after catch-up",
                    result=len(budgets_after),
                ),
                Verification(
                    store="redis:alerts",
                    query=f"SCAN alerts keys of the {target} (workspace hash tag"
                    f"{'; customer by keyed hash' if target == 'customer' else ''})",
                    result=len(redis_after),
                ),
            ],
            reason=None if status == "done" else "leftovers_found",
            finished_at=datetime.now(UTC),
        )
        return report
