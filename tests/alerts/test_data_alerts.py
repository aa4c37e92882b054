"""Data alerts (rollup.alerts.v1) reach the workspace's budget channels: a model the price table cannot price
is listed in /v1/usage with its events and tokens, never priced at zero, and alerted once per model; a customer
(and a plan) whose month's AI cost passes its revenue is alerted once per month."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from spendstream.alerts.app import create_service as create_alerts
from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.settings import IngestSettings
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.settings import RollupSettings
from tests.alerts.conftest import alerts_settings, budget_body
from tests.alerts.receivers import SmtpServer, WebhookReceiver
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = pytest.mark.integration


def _unpriced(model: str, n: int) -> list[dict[str, Any]]:
    events = [usage_event(provider="acme", model=model, input_tokens=100, output_tokens=10) for _ in range(n)]
    for event in events:
        del event["cost_usd"]
    return events


async def _post(client: httpx.AsyncClient, key: str, events: list[dict[str, Any]]) -> None:
    r = await client.post("/v1/events", json={"events": events}, headers=auth(key))
    assert r.status_code == 202, r.text


async def test_an_unpriced_model_is_listed_and_alerted_once_per_model_to_every_channel(
    iso: Isolation, receiver: WebhookReceiver, smtp: SmtpServer
) -> None:
    ws = await create_workspace(iso)
    other = await create_workspace(iso, "other")
    rollup = create_rollup(iso.settings(RollupSettings, batch_timeout_ms=50, completeness_check_seconds=0.3))
    services = [create_ingest(iso.settings(IngestSettings)), rollup, create_alerts(alerts_settings(iso, smtp))]
    async with serving(services) as client:
        # Two budgets with the same receiver and address: each channel hears of the model once.
        for name in ("monthly", "chat"):
            r = await client.post("/v1/budgets", json=budget_body(receiver, name=name), headers=auth(ws["admin"]))
            assert r.status_code == 201, r.text
        await _post(client, ws["ingest"], [*_unpriced("acme-mystery-1", 3), *_unpriced("acme-mystery-2", 1)])
        await _post(client, ws["ingest"], [usage_event(cost_usd=0.5)])
        await _post(client, other["ingest"], _unpriced("acme-mystery-1", 1))  # no budget, so no channel

        async def both() -> bool:
            return len(receiver.accepted) >= 2 and len(smtp.messages) >= 2

        await eventually(both, timeout=60, interval=0.3)
        await _post(client, ws["ingest"], _unpriced("acme-mystery-1", 2))  # the same model again: no new alert

        async def listed() -> list[dict[str, Any]] | None:
            r = await client.get("/v1/usage", headers=auth(ws["read"]))
            unknown: list[dict[str, Any]] = r.json()["unknown_models"]
            return unknown if sum(u["requests"] for u in unknown) == 6 else None

        unknown = await eventually(listed, timeout=30, interval=0.3)
        await asyncio.sleep(2)  # several more checks of the watch
    assert unknown == [
        {"provider": "acme", "model": "acme-mystery-1", "requests": 5, "input_tokens": 500, "output_tokens": 50},
        {"provider": "acme", "model": "acme-mystery-2", "requests": 1, "input_tokens": 100, "output_tokens": 10},
    ]
    alerted = sorted((a["kind"], a["model"], a["events"], a["tokens"]) for a in receiver.accepted)
    assert alerted == [("unpriced_model", "acme-mystery-1", 3, 330), ("unpriced_model", "acme-mystery-2", 1, 110)]
    assert {a["workspace_id"] for a in receiver.accepted} == {ws["workspace_id"]}
    assert smtp.subjects() == [
        "[spendstream] no price for acme/acme-mystery-1 (3 events)",
        "[spendstream] no price for acme/acme-mystery-2 (1 events)",
    ]


async def test_a_customer_whose_ai_cost_passes_its_revenue_is_alerted_once_per_month_to_every_channel(
    iso: Isolation, receiver: WebhookReceiver, smtp: SmtpServer
) -> None:
    ws = await create_workspace(iso)
    rollup = create_rollup(iso.settings(RollupSettings, batch_timeout_ms=50, margin_check_seconds=0.3))
    services = [create_ingest(iso.settings(IngestSettings)), rollup, create_alerts(alerts_settings(iso, smtp))]
    month = f"{datetime.now(UTC):%Y-%m}"
    async with serving(services) as client:
        r = await client.post("/v1/budgets", json=budget_body(receiver, name="monthly"), headers=auth(ws["admin"]))
        assert r.status_code == 201, r.text
        costly = {"feature": "chat", "customer_id": "cust-loss", "customer_plan": "solo"}
        await _post(client, ws["ingest"], [usage_event(cost_usd=3.0, tags=costly) for _ in range(2)])
        record = {"source": "billing", "source_id": "inv-9", "customer_id": "cust-loss", "amount": "5.00"}
        r = await client.post(
            "/v1/revenue",
            json={"records": [record | {"currency": "USD", "month": month, "customer_plan": "solo"}]},
            headers=auth(ws["admin"]),
        )
        assert r.json()["accepted"] == 1

        async def both() -> bool:
            return len(receiver.accepted) >= 2 and len(smtp.messages) >= 2

        await eventually(both, timeout=60, interval=0.3)
        await asyncio.sleep(2)  # several more checks: nothing raised twice
    alerted = sorted((a["kind"], a["customer_id"], a["customer_plan"], a["month"]) for a in receiver.accepted)
    assert alerted == [("margin_customer", "cust-loss", None, month), ("margin_plan", None, "solo", month)]
    assert sorted(smtp.subjects()) == [
        f"[spendstream] customer cust-loss: AI cost > 100% of {month} revenue",
        f"[spendstream] plan solo: AI cost > 100% of {month} revenue",
    ]
    figures = sorted((a["revenue_usd"], a["ai_cost_usd"], a["threshold_pct"]) for a in receiver.accepted)
    assert figures == [("5.000000000", "6.000000000", 100)] * 2
