"""Reconciliation: lift alerts' counters to rollup's ClickHouse figures, so drift cannot accumulate.

alerts never opens ClickHouse (rollup owns it); it asks rollup's internal HTTP route for the cost per day of each
budgeted scope over the current month (and the spike window), and raises any counter that is below. It never
lowers one: rollup may not have stored what alerts already counted. What this repairs: spend alerts could not
see (a budget created mid-month for a tag scope alerts did not track yet, counters lost with a Redis
failover, records consumed while Redis was unreachable and later skipped).
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx

from spendstream.alerts import metrics
from spendstream.alerts.keyspace import KeySpace
from spendstream.alerts.periods import month_end, month_id, month_start, to_nanos
from spendstream.alerts.spend import DAY_KEEP, MONTH_KEEP, SpendCounter
from spendstream.common.records import BudgetRecord

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(
        self, client: httpx.AsyncClient, rollup_url: str, token: str, keys: KeySpace, spend: SpendCounter
    ) -> None:
        self._client = client
        self._url = rollup_url.rstrip("/")
        self._token = token
        self._keys = keys
        self._spend = spend

    @property
    def enabled(self) -> bool:
        return bool(self._url and self._token)

    async def budget(self, budget: BudgetRecord, now: datetime) -> int:
        """Reconcile one budget's scope; returns how many counters were raised."""
        first = min(month_start(now).date(), now.date() - timedelta(days=7))
        params: dict[str, str] = {
            "workspace_id": budget.workspace_id,
            "from": first.isoformat(),
            "to": now.date().isoformat(),
        }
        if budget.scope is not None:
            params.update(tag=budget.scope.tag, value=budget.scope.value)
        try:
            response = await self._client.get(
                f"{self._url}/internal/v1/spend", params=params, headers={"X-Internal-Token": self._token}
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            metrics.RECONCILE_FAILURES.inc()
            log.warning("reconcile request failed", extra={"error": type(exc).__name__})
            return 0
        days = {date.fromisoformat(d): to_nanos(Decimal(c)) for d, c in response.json()["days"].items()}
        scope = self._keys.scope(
            budget.workspace_id,
            budget.scope.tag if budget.scope else None,
            budget.scope.value if budget.scope else None,
        )
        month = month_id(now)
        mtd = sum(c for d, c in days.items() if month_id(datetime(d.year, d.month, d.day, tzinfo=UTC)) == month)
        raised = 0
        month_expiry = int((month_end(now) + MONTH_KEEP).timestamp())
        raised += await self._spend.raise_to(
            self._keys.month_spend(budget.workspace_id, month, scope), mtd, month_expiry
        )
        for day, cost in days.items():
            if day >= now.date() - timedelta(days=7):
                expiry = int((datetime(day.year, day.month, day.day, tzinfo=UTC) + DAY_KEEP).timestamp())
                raised += await self._spend.raise_to(
                    self._keys.day_spend(budget.workspace_id, day, scope), cost, expiry
                )
        metrics.RECONCILE_RAISED.inc(raised)
        return raised
