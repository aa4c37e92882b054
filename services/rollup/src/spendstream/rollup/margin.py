"""AI margin: revenue against AI cost per customer or plan, month by month.

Costs are read from usage_daily, the rollup /v1/usage answers from, so both always agree. Revenue (revenue.py)
is converted to USD record by record with the month's rate (USD itself needs none; any other currency without
a rate for its month refuses the whole answer: an amount is never summed as if it were USD). A customer with
usage in a month but no revenue record there gets its plan's price, when its plan has one; its plan is the
`customer_plan` its events of that month carry (the costliest, when several). Revenue is not attributed to
features; the cost is, as each group's share of AI cost by feature.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any, Literal

from clickhouse_connect.driver.client import Client

from spendstream.rollup.revenue import RevenueStore, month_end, month_of

GroupBy = Literal["customer_id", "customer_plan"]
NANO = Decimal("0.000000001")
CENT = Decimal("0.01")
ZERO = Decimal(0)


class MissingRate(Exception):
    """A currency has no rate for a month: the margin cannot be computed without summing it as USD."""

    def __init__(self, currency: str, month: str) -> None:
        super().__init__(f"no USD rate for {currency} in {month}: set one with PUT /v1/revenue/rates")
        self.currency = currency
        self.month = month


def usd(amount: Decimal, currency: str, month: str, rates: dict[tuple[str, str], Decimal]) -> Decimal:
    if currency == "USD":
        return amount.quantize(NANO, ROUND_HALF_EVEN)
    rate = rates.get((month, currency))
    if rate is None:
        raise MissingRate(currency, month)
    return (amount * rate).quantize(NANO, ROUND_HALF_EVEN)


def _pct(part: Decimal, whole: Decimal) -> str | None:
    return None if whole == 0 else format((part / whole * 100).quantize(CENT, ROUND_HALF_EVEN), "f")


@dataclass
class Group:
    revenue: Decimal = ZERO
    cost: Decimal = ZERO
    by_feature: dict[str, Decimal] = field(default_factory=lambda: defaultdict(lambda: ZERO))
    has_revenue: bool = False

    def document(self, key: str) -> dict[str, Any]:
        margin = self.revenue - self.cost
        return {
            "key": key,
            "revenue_usd": format(self.revenue, "f"),
            "ai_cost_usd": format(self.cost, "f"),
            "gross_margin_usd": format(margin, "f"),
            "margin_pct": _pct(margin, self.revenue),
            "cost_exceeds_revenue": self.cost > self.revenue,
            "cost_by_feature": [
                {"feature": f, "ai_cost_usd": format(c, "f"), "share_pct": _pct(c, self.cost)}
                for f, c in sorted(self.by_feature.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
        }


def _totals(groups: Iterable[Group]) -> dict[str, Any]:
    total = Group()
    for g in groups:
        total.revenue += g.revenue
        total.cost += g.cost
    doc = total.document("")
    return {k: v for k, v in doc.items() if k not in ("key", "cost_by_feature")}


def _ordered(groups: dict[str, Group]) -> list[dict[str, Any]]:
    # Losses first, the deepest first; then by margin, then by key.
    items = sorted(groups.items(), key=lambda kv: (kv[1].cost <= kv[1].revenue, kv[1].revenue - kv[1].cost, kv[0]))
    return [g.document(k) for k, g in items]


class MarginQueries:
    """The margin of one workspace over whole months, from usage_daily and the revenue tables."""

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self.db = database
        self.revenue = RevenueStore(client, database)

    def costs(self, workspace_id: str, start: date, end: date) -> list[tuple[str, str, str, str, Decimal]]:
        """(month, customer_id, customer_plan, feature, cost) over [start, end], as /v1/usage sums them."""
        rows = self._client.query(
            "SELECT toStartOfMonth(day) AS m, customer_id, customer_plan, feature, sum(cost_usd), sum(requests) "
            f"FROM {self.db}.usage_daily WHERE workspace_id = {{ws:String}} AND day >= {{start:Date}} "
            "AND day <= {end:Date} GROUP BY m, customer_id, customer_plan, feature",
            parameters={"ws": workspace_id, "start": start, "end": end},
        ).result_rows
        return [(month_of(m), str(c), str(p), str(f), Decimal(cost)) for m, c, p, f, cost, n in rows if n != 0]

    def groups(self, workspace_id: str, first: date, last: date, group_by: GroupBy) -> dict[str, dict[str, Group]]:
        """month (YYYY-MM) -> group key -> its revenue, cost and cost by feature, for the months first..last."""
        end = month_end(last)
        costs = self.costs(workspace_id, first, end)
        records = self.revenue.records(workspace_id, first, end)
        plans = self.revenue.plans(workspace_id)
        rates = self.revenue.rates(workspace_id)

        months: dict[str, dict[str, Group]] = {}
        cursor = first
        while cursor <= last:
            months[month_of(cursor)] = {}
            cursor = date(cursor.year + cursor.month // 12, cursor.month % 12 + 1, 1)

        # The plan of each customer's month: the plan its costliest events carried.
        plan_cost: dict[tuple[str, str], dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
        for month, customer, plan, feature, cost in costs:
            plan_cost[(month, customer)][plan] += cost
            key = customer if group_by == "customer_id" else plan
            group = months.setdefault(month, {}).setdefault(key, Group())
            group.cost += cost
            group.by_feature[feature] += cost
        plan_of = {k: max(v.items(), key=lambda kv: (kv[1], kv[0]))[0] for k, v in plan_cost.items()}

        billed: set[tuple[str, str]] = set()
        for r in records:
            month = month_of(r["period_start"])
            customer = str(r["customer_id"])
            billed.add((month, customer))
            amount = usd(Decimal(r["amount"]), str(r["currency"]), month, rates)
            key = (
                customer
                if group_by == "customer_id"
                else (str(r["customer_plan"]) or plan_of.get((month, customer), ""))
            )
            group = months.setdefault(month, {}).setdefault(key, Group())
            group.revenue += amount
            group.has_revenue = True
        for (month, customer), plan in sorted(plan_of.items()):
            if (month, customer) in billed or plan not in plans:
                continue
            amount, currency = plans[plan]
            key = customer if group_by == "customer_id" else plan
            group = months[month].setdefault(key, Group())
            group.revenue += usd(amount, currency, month, rates)
            group.has_revenue = True
        return dict(sorted(months.items()))

    def margin(self, workspace_id: str, first: date, last: date, group_by: GroupBy) -> dict[str, Any]:
        # Exact sums and products: the default context's 28 digits could round a large amount times a rate.
        with localcontext() as ctx:
            ctx.prec = 100
            return self._margin(workspace_id, first, last, group_by)

    def _margin(self, workspace_id: str, first: date, last: date, group_by: GroupBy) -> dict[str, Any]:
        months = self.groups(workspace_id, first, last, group_by)
        every = [g for groups in months.values() for g in groups.values()]
        return {
            "months": [
                {"month": month, "groups": _ordered(groups), "total": _totals(groups.values())}
                for month, groups in months.items()
            ],
            "total": _totals(every),
        }
