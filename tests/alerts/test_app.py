"""alerts end to end on the real broker and Redis: events posted to ingest, webhooks to a real HTTP receiver,
e-mails to a real SMTP server - each threshold exactly once through rebalances, replays and budget changes."""

from __future__ import annotations

from contextlib import AsyncExitStack

import httpx
import pytest

from spendstream.alerts.app import create_service as create_alerts
from spendstream.common.topics import ALERTS_FIRED, USAGE_EVENTS
from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.settings import IngestSettings
from tests.alerts.conftest import alerts_settings, budget_body
from tests.alerts.receivers import SmtpServer, WebhookReceiver, settled
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = pytest.mark.integration


async def spend(client: httpx.AsyncClient, key: str, *amounts: float) -> None:
    """One ingest batch per amount, so each is its own record on usage.events.v1."""
    for amount in amounts:
        r = await client.post("/v1/events", json={"events": [usage_event(cost_usd=amount)]}, headers=auth(key))
        assert r.status_code == 202, r.text


async def all_settled(
    iso: Isolation, group: str = "spendstream-alerts", delivery_group: str = "spendstream-alerts-delivery"
) -> None:
    await settled(iso, group, USAGE_EVENTS)
    await settled(iso, delivery_group, ALERTS_FIRED)


def thresholds(receiver: WebhookReceiver) -> list[int]:
    return sorted(a["threshold_pct"] for a in receiver.accepted)


async def test_two_replicas_with_a_rebalance_deliver_each_threshold_once_and_a_replay_delivers_nothing(
    iso: Isolation, receiver: WebhookReceiver, smtp: SmtpServer
) -> None:
    ws = await create_workspace(iso)
    async with AsyncExitStack() as stack:
        ingest = await stack.enter_async_context(serving([create_ingest(iso.settings(IngestSettings))]))
        first = AsyncExitStack()
        alerts_a = await first.enter_async_context(serving([create_alerts(alerts_settings(iso, smtp))]))
        created = await alerts_a.post("/v1/budgets", json=budget_body(receiver), headers=auth(ws["admin"]))
        assert created.status_code == 201, created.text

        await spend(ingest, ws["ingest"], 40, 36)  # 76 USD: 75 %
        await eventually(lambda: _true(thresholds(receiver) == [75]), timeout=60)

        # A second replica joins the group (rebalance) while spend crosses 90 %, then the first one leaves
        # (another rebalance) before 100 % is crossed.
        await stack.enter_async_context(serving([create_alerts(alerts_settings(iso, smtp))]))
        await spend(ingest, ws["ingest"], 8, 7)  # 91 USD: 90 %
        await first.aclose()
        await spend(ingest, ws["ingest"], 10)  # 101 USD: 100 %
        await eventually(lambda: _true(thresholds(receiver) == [75, 90, 100]), timeout=60)
        await all_settled(iso)
        assert thresholds(receiver) == [75, 90, 100]
        await eventually(lambda: _true(len(smtp.messages) == 3), timeout=60)
        assert [m["To"] for m in smtp.messages] == ["finance@example.com"] * 3
        assert sorted(str(m["X-Spendstream-Delivery"]) for m in smtp.messages) == sorted(
            a["alert_id"] for a in receiver.accepted
        )

        # A replay of the whole topic: a new consumer group (and delivery group) reads everything again.
        replay = alerts_settings(iso, smtp, group_id="replay", delivery_group_id="replay-delivery")
        await stack.enter_async_context(serving([create_alerts(replay)]))
        await all_settled(iso, "replay", "replay-delivery")
        await all_settled(iso)
    assert thresholds(receiver) == [75, 90, 100]
    assert len(smtp.messages) == 3
    assert receiver.refused == []


async def test_raising_the_budget_at_95_rearms_75_percent_only_until_150_is_crossed(
    iso: Isolation, receiver: WebhookReceiver
) -> None:
    ws = await create_workspace(iso)
    async with serving([create_ingest(iso.settings(IngestSettings)), create_alerts(alerts_settings(iso))]) as client:
        created = await client.post("/v1/budgets", json=budget_body(receiver, emails=[]), headers=auth(ws["admin"]))
        budget_id = created.json()["budget_id"]
        await spend(client, ws["ingest"], 75, 15, 5)  # 95 USD
        await eventually(lambda: _true(thresholds(receiver) == [75, 90]), timeout=60)

        raised = await client.patch(f"/v1/budgets/{budget_id}", json={"amount_usd": "200"}, headers=auth(ws["admin"]))
        assert raised.status_code == 200, raised.text
        assert raised.json()["revision"] == 2
        await spend(client, ws["ingest"], 50)  # 145 USD: below 75 % of 200
        await all_settled(iso)
        assert thresholds(receiver) == [75, 90]

        await spend(client, ws["ingest"], 10)  # 155 USD: 75 % of 200 crossed
        await eventually(lambda: _true(thresholds(receiver) == [75, 75, 90]), timeout=60)
        await all_settled(iso)
    assert thresholds(receiver) == [75, 75, 90]
    second = [a for a in receiver.accepted if a["threshold_pct"] == 75][1]
    assert (second["amount_usd"], second["spend_usd"], second["budget_revision"]) == ("200", "155.000000000", 2)


async def _true(value: bool) -> bool:
    return value
