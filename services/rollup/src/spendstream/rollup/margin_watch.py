"""Margin alerts: a customer (or plan) whose month's AI cost passed a share of its revenue, raised once.

Periodic (every `margin_check_seconds`): for each workspace with revenue or plan prices, the margin of the
previous and the current month (margin.py), per customer and per plan. A group with revenue in the month whose
AI cost exceeds `margin_alert_pct` % of it raises one `margin_customer` / `margin_plan` DataAlert per
(workspace, group, month), through the completeness watch's path: published on rollup.alerts.v1, recorded in
data_alerts, delivered by alerts to the workspace's channels. A group without revenue (a free customer) raises
none: that subsidy is the waste findings' `free_tier_subsidy`. A workspace whose currencies lack a rate is
skipped (logged by id) until an admin sets it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from decimal import Decimal, localcontext

from spendstream.common.records import DataAlert, DataAlertKind
from spendstream.rollup.completeness import alert_id
from spendstream.rollup.margin import Group, GroupBy, MarginQueries, MissingRate

log = logging.getLogger(__name__)
KINDS: dict[GroupBy, DataAlertKind] = {"customer_id": "margin_customer", "customer_plan": "margin_plan"}


class MarginWatch:
    def __init__(
        self,
        *,
        queries: MarginQueries,
        raise_once: Callable[[DataAlert], Awaitable[None]],
        threshold_pct: int,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._queries = queries
        self._raise = raise_once
        self._pct = threshold_pct
        self._now = now

    def _groups(self, ws: str, first: date, last: date, group_by: GroupBy) -> dict[str, dict[str, Group]]:
        with localcontext() as ctx:
            ctx.prec = 100  # exact, as /v1/margin
            return self._queries.groups(ws, first, last, group_by)

    async def run_once(self) -> int:
        """Check every workspace; returns how many groups are over the threshold (raised now or before)."""
        now = self._now()
        this_month = now.date().replace(day=1)
        previous = date(this_month.year - (this_month.month == 1), (this_month.month - 2) % 12 + 1, 1)
        over = 0
        for ws in await asyncio.to_thread(self._queries.revenue.workspaces):
            for group_by, kind in KINDS.items():
                try:
                    months = await asyncio.to_thread(self._groups, ws, previous, this_month, group_by)
                except MissingRate as exc:
                    log.warning(
                        "margin check skipped: a currency has no rate",
                        extra={"workspace_id": ws, "currency": exc.currency, "month": exc.month},
                    )
                    break
                for month, groups in months.items():
                    for key, group in groups.items():
                        if not group.has_revenue or group.cost * 100 <= group.revenue * Decimal(self._pct):
                            continue
                        over += 1
                        await self._raise(
                            DataAlert(
                                alert_id=alert_id(ws, kind, key, month),
                                workspace_id=ws,
                                kind=kind,
                                month=month,
                                customer_id=key if group_by == "customer_id" else None,
                                customer_plan=key if group_by == "customer_plan" else None,
                                revenue_usd=format(group.revenue, "f"),
                                ai_cost_usd=format(group.cost, "f"),
                                threshold_pct=self._pct,
                                fired_at=now,
                            )
                        )
        return over
