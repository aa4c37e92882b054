"""Reconciliation with rollup's ClickHouse figures over rollup's internal HTTP route (alerts never opens
ClickHouse): spend alerts could not count itself is lifted from rollup, and the alert it crosses fires once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from spendstream.alerts.app import create_service as create_alerts
from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.settings import IngestSettings
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.settings import RollupSettings
from tests.alerts.conftest import alerts_settings, budget_body
from tests.alerts.receivers import WebhookReceiver, listening
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = pytest.mark.integration
TOKEN = "internal-token-for-tests-0123456789"


async def test_a_budget_created_after_the_spend_is_reconciled_from_rollup_and_fires_once(
    iso: Isolation, receiver: WebhookReceiver
) -> None:
    ws = await create_workspace(iso)
    rollup = create_rollup(iso.settings(RollupSettings, internal_token=TOKEN))
    async with listening(rollup) as rollup_url, serving([create_ingest(iso.settings(IngestSettings))]) as ingest:
        events = [
            usage_event(cost_usd=50, tags={"feature": "search"}),
            usage_event(cost_usd=30, tags={"feature": "search"}),
            usage_event(cost_usd=500, tags={"feature": "chat"}),
        ]
        assert (await ingest.post("/v1/events", json={"events": events}, headers=auth(ws["ingest"]))).status_code == 202
        async with httpx.AsyncClient(base_url=rollup_url) as http:
            refused = await http.get(
                "/internal/v1/spend", params={"workspace_id": ws["workspace_id"]}, headers={"X-Internal-Token": "wrong"}
            )
            assert refused.status_code == 401

            async def stored() -> dict[str, Any] | None:
                r = await http.get("/v1/usage", headers=auth(ws["read"]))
                body: dict[str, Any] = r.json()
                return body if body["totals"]["requests"] == 3 else None

            await eventually(stored, timeout=60)

        settings = alerts_settings(iso, rollup_url=rollup_url, internal_token=TOKEN, reconcile_interval_seconds=0.5)
        async with serving([create_alerts(settings)]) as alerts:
            # The feature scope was not budgeted while the events went by: only rollup knows its spend.
            created = await alerts.post(
                "/v1/budgets",
                headers=auth(ws["admin"]),
                json=budget_body(receiver, emails=[], scope={"tag": "feature", "value": "search"}),
            )
            assert created.status_code == 201
            await eventually(lambda: _true(len(receiver.accepted) == 1), timeout=60)
            body = await alerts.get(f"/v1/budgets/{created.json()['budget_id']}/alerts", headers=auth(ws["admin"]))
            assert len(body.json()["alerts"]) == 1
    [alert] = receiver.accepted
    assert (alert["threshold_pct"], alert["spend_usd"], alert["budget"]["scope"]) == (
        75,
        "80.000000000",
        {"tag": "feature", "value": "search"},
    )


async def _true(value: bool) -> bool:
    return value
