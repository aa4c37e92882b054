"""GET /v1/margin over a month of real usage and revenue (invoices, a refund, a correction, a plan-priced customer,
a second currency with its rate), read exactly against figures computed by hand; the margin alert fires once per
customer and month; a customer erasure removes its revenue and its margin rows.

The month (last month, so its events are all in the past):
  usage   cust-a (pro)     chat 3 x 2.50, search 1 x 2.50        = 10.00
          cust-b (pro)     chat 2 x 30.00                        = 60.00
          cust-c (starter) chat 1 x 4.00                         =  4.00
          cust-d (pro)     search 1 x 5.00                       =  5.00
  revenue cust-a  inv-a1 100.00 USD, corrected to 90.00          = 90.00
          cust-b  inv-b1 49.00 USD (plan pro), refund re-b1 -9.00 = 40.00
          cust-c  no record: plan starter at 19.00 USD a month   = 19.00
          cust-d  inv-d1 50.00 EUR at 1.085 USD                  = 54.25
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from spendstream.common.records import DataAlert
from spendstream.rollup.app import create_service
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.completeness import CompletenessWatch
from spendstream.rollup.ledger import Ledger
from spendstream.rollup.margin import MarginQueries
from spendstream.rollup.margin_watch import MarginWatch
from spendstream.rollup.revenue import month_end
from spendstream.rollup.settings import RollupSettings
from tests.retention.pipeline import reports, send_command, shred
from tests.rollup.kafka import lag, publisher
from tests.support import Isolation, Stack, auth, create_workspace, eventually, new_isolation, provision, serving
from tests.support import usage_event as event

pytestmark = pytest.mark.integration

MONTH = (datetime.now(UTC).date().replace(day=1) - timedelta(days=1)).replace(day=1)
M = f"{MONTH:%Y-%m}"


def _at(day: int) -> str:
    return datetime(MONTH.year, MONTH.month, day, 12, tzinfo=UTC).isoformat()


def _usage(customer: str, plan: str, feature: str, n: int, cost: float, day: int = 10) -> list[dict[str, Any]]:
    tags = {"feature": feature, "customer_id": customer, "customer_plan": plan}
    return [event(cost_usd=cost, timestamp=_at(day), tags=tags) for _ in range(n)]


@dataclass
class World:
    iso: Isolation
    client: httpx.AsyncClient
    ws: dict[str, str]


@pytest.fixture(scope="module")
async def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    iso = new_isolation(stack, tmp_path_factory.mktemp("margin"))
    await provision(iso)
    ws = await create_workspace(iso, "margin")
    async with publisher(iso) as pub:
        await pub.batch(
            ws["workspace_id"],
            _usage("cust-a", "pro", "chat", 3, 2.5)
            + _usage("cust-a", "pro", "search", 1, 2.5, day=20)
            + _usage("cust-b", "pro", "chat", 2, 30.0)
            + _usage("cust-c", "starter", "chat", 1, 4.0)
            + _usage("cust-d", "pro", "search", 1, 5.0, day=28),
        )
    async with serving([create_service(iso.settings(RollupSettings, batch_timeout_ms=50))]) as client:

        async def drained() -> bool:
            return await lag(iso) == 0

        await eventually(drained, timeout=30)
        admin = auth(ws["admin"])
        records = [
            {
                "source": "invoices",
                "source_id": "inv-a1",
                "customer_id": "cust-a",
                "amount": "100.00",
                "currency": "USD",
            },
            {"source": "invoices", "source_id": "inv-b1", "customer_id": "cust-b", "amount": "49", "currency": "USD"}
            | {"customer_plan": "pro"},
            {"source": "invoices", "source_id": "re-b1", "customer_id": "cust-b", "amount": "-9.00", "currency": "USD"},
            {"source": "invoices", "source_id": "inv-d1", "customer_id": "cust-d", "amount": "50", "currency": "EUR"},
        ]
        r = await client.post("/v1/revenue", json={"records": [rec | {"month": M} for rec in records]}, headers=admin)
        assert r.json() == {"accepted": 4, "rejected": []}
        correction = records[0] | {"amount": "90.00", "month": M}
        assert (await client.post("/v1/revenue", json={"records": [correction]}, headers=admin)).status_code == 200
        plans = {"plans": [{"plan": "starter", "monthly_amount": "19.00", "currency": "USD"}]}
        assert (await client.put("/v1/revenue/plans", json=plans, headers=admin)).status_code == 200
        rates = {"rates": [{"month": M, "currency": "EUR", "usd_per_unit": "1.085"}]}
        assert (await client.put("/v1/revenue/rates", json=rates, headers=admin)).status_code == 200
        yield World(iso, client, ws)


async def _margin(world: World, group_by: str) -> dict[str, Any]:
    r = await world.client.get(
        "/v1/margin", params={"from": M, "to": M, "group_by": group_by}, headers=auth(world.ws["read"])
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _figures(group: dict[str, Any]) -> tuple[str, str, str, str, str | None, bool]:
    return (
        group["key"],
        group["revenue_usd"],
        group["ai_cost_usd"],
        group["gross_margin_usd"],
        group["margin_pct"],
        group["cost_exceeds_revenue"],
    )


async def test_margin_per_customer_is_exact_with_losses_first(world: World) -> None:
    body = await _margin(world, "customer_id")
    (month,) = body["months"]
    assert month["month"] == M
    assert [_figures(g) for g in month["groups"]] == [
        ("cust-b", "40.000000000", "60.000000000", "-20.000000000", "-50.00", True),
        ("cust-c", "19.000000000", "4.000000000", "15.000000000", "78.95", False),  # 15 / 19
        ("cust-d", "54.250000000", "5.000000000", "49.250000000", "90.78", False),  # 49.25 / 54.25
        ("cust-a", "90.000000000", "10.000000000", "80.000000000", "88.89", False),  # 80 / 90
    ]
    cust_a = month["groups"][3]
    assert [(f["feature"], f["ai_cost_usd"], f["share_pct"]) for f in cust_a["cost_by_feature"]] == [
        ("chat", "7.500000000", "75.00"),
        ("search", "2.500000000", "25.00"),
    ]
    expected_total = {
        "revenue_usd": "203.250000000",
        "ai_cost_usd": "79.000000000",
        "gross_margin_usd": "124.250000000",
        "margin_pct": "61.13",  # 124.25 / 203.25
        "cost_exceeds_revenue": False,
    }
    assert month["total"] == expected_total and body["total"] == expected_total


async def test_margin_per_plan_takes_the_plan_from_the_record_or_else_from_the_customers_events(world: World) -> None:
    (month,) = (await _margin(world, "customer_plan"))["months"]
    assert [_figures(g) for g in month["groups"]] == [
        ("starter", "19.000000000", "4.000000000", "15.000000000", "78.95", False),
        ("pro", "184.250000000", "75.000000000", "109.250000000", "59.29", False),  # 109.25 / 184.25
    ]
    assert [(f["feature"], f["share_pct"]) for f in month["groups"][1]["cost_by_feature"]] == [
        ("chat", "90.00"),  # 7.50 + 60.00 of 75.00
        ("search", "10.00"),
    ]


async def test_margin_costs_are_the_usage_apis_costs(world: World) -> None:
    usage = await world.client.get(
        "/v1/usage",
        params={"from": MONTH.isoformat(), "to": month_end(MONTH).isoformat(), "group_by": "customer_id"},
        headers=auth(world.ws["read"]),
    )
    by_customer = {row["customer_id"]: row["cost_usd"] for row in usage.json()["rows"]}
    (month,) = (await _margin(world, "customer_id"))["months"]
    assert {g["key"]: g["ai_cost_usd"] for g in month["groups"]} == by_customer
    assert month["total"]["ai_cost_usd"] == usage.json()["totals"]["cost_usd"]


async def test_the_margin_alert_fires_once_per_customer_and_month_and_per_plan(world: World) -> None:
    client = clickhouse_client(world.iso.stack.clickhouse)
    db = world.iso.database
    published: list[DataAlert] = []

    async def publish(alert: DataAlert) -> None:
        published.append(alert)

    watch = CompletenessWatch(
        client=client, database=db, ledger=Ledger(client, db), publish=publish, grace_seconds=600, days=3
    )
    in_month = datetime(MONTH.year, MONTH.month, 15, tzinfo=UTC)

    def margin_watch(pct: int) -> MarginWatch:
        return MarginWatch(
            queries=MarginQueries(client, db), raise_once=watch.raise_once, threshold_pct=pct, now=lambda: in_month
        )

    assert await margin_watch(100).run_once() == 1
    assert [(a.kind, a.customer_id, a.month, a.revenue_usd, a.ai_cost_usd) for a in published] == [
        ("margin_customer", "cust-b", M, "40.000000000", "60.000000000")
    ]
    await margin_watch(100).run_once()
    assert len(published) == 1  # the same customer and month never again
    # At 30 %: the plan pro (75.00 of 184.25 = 40.7 %) passes too; cust-b is not raised a second time.
    await margin_watch(30).run_once()
    assert [(a.kind, a.customer_plan, a.month, a.threshold_pct) for a in published[1:]] == [
        ("margin_plan", "pro", M, 30)
    ]


async def test_a_currency_without_a_rate_for_its_month_is_refused_never_summed_as_usd(world: World) -> None:
    before = MONTH - timedelta(days=1)
    earlier = f"{before:%Y-%m}"
    record = {"source": "invoices", "source_id": "inv-gbp", "customer_id": "cust-z", "amount": "10", "currency": "GBP"}
    r = await world.client.post(
        "/v1/revenue", json={"records": [record | {"month": earlier}]}, headers=auth(world.ws["admin"])
    )
    assert r.json()["accepted"] == 1
    refused = await world.client.get("/v1/margin", params={"from": earlier, "to": M}, headers=auth(world.ws["read"]))
    assert refused.status_code == 422
    assert refused.json()["error"] == "missing_rate" and f"GBP in {earlier}" in refused.json()["message"]
    # The months without that record still answer.
    assert (await _margin(world, "customer_id"))["total"]["revenue_usd"] == "203.250000000"


async def test_a_customer_erasure_removes_its_revenue_and_its_margin_rows(world: World) -> None:
    ws = world.ws["workspace_id"]
    await send_command(world.iso, "req-margin-1", ws, customer_id="cust-b")
    (report,) = await reports(world.iso, "req-margin-1", "rollup")
    assert report.status == "done"
    counts = {c.store: (c.before, c.after) for c in report.counts}
    assert counts["clickhouse:revenue"] == (2, 0)  # inv-b1 and its refund re-b1
    body = await _margin(world, "customer_id")
    assert "cust-b" not in {g["key"] for m in body["months"] for g in m["groups"]}
    listing = await world.client.get("/v1/revenue", params={"from": M, "to": M}, headers=auth(world.ws["read"]))
    assert "cust-b" not in listing.text


async def test_a_workspace_erasure_removes_its_revenue_prices_rates_and_the_sealed_stripe_secret(world: World) -> None:
    doomed = await create_workspace(world.iso, "doomed")
    admin = auth(doomed["admin"])

    async def key_known() -> bool:  # rollup is already serving: it learns the new workspace's keys from Kafka
        return (await world.client.get("/v1/revenue", params={"from": M, "to": M}, headers=admin)).status_code != 401

    await eventually(key_known)
    record = {"source": "invoices", "source_id": "inv-x", "customer_id": "cust-x", "amount": "5", "currency": "USD"}
    assert (await world.client.post("/v1/revenue", json={"records": [record | {"month": M}]}, headers=admin)).json()[
        "accepted"
    ] == 1
    plans = {"plans": [{"plan": "solo", "monthly_amount": "9", "currency": "USD"}]}
    assert (await world.client.put("/v1/revenue/plans", json=plans, headers=admin)).status_code == 200
    rates = {"rates": [{"month": M, "currency": "EUR", "usd_per_unit": "1.1"}]}
    assert (await world.client.put("/v1/revenue/rates", json=rates, headers=admin)).status_code == 200
    endpoint = {"signing_secret": "whsec_doomed_0123456789"}
    assert (await world.client.put("/v1/stripe/endpoint", json=endpoint, headers=admin)).status_code == 200

    await shred(world.iso, doomed["workspace_id"])  # ingest's part of the saga
    await send_command(world.iso, "req-margin-ws", doomed["workspace_id"])
    (report,) = await reports(world.iso, "req-margin-ws", "rollup")
    assert report.status == "done"
    counts = {c.store: (c.before, c.after) for c in report.counts}
    for table in ("revenue", "plan_prices", "currency_rates", "stripe_endpoints"):
        assert counts[f"clickhouse:{table}"] == (1, 0), table
    # The other workspace's revenue is untouched: 203.25 less cust-b's 40.00 (erased above).
    assert (await _margin(world, "customer_id"))["total"]["revenue_usd"] == "163.250000000"
