"""Deliveries against real receivers: signed webhooks a receiver verifies (and whose replay it refuses),
retries until a receiver that was down comes back, dead letters after bounded attempts, e-mail over SMTP."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from spendstream.alerts.app import create_service as create_alerts
from spendstream.alerts.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER
from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.settings import IngestSettings
from tests.alerts.conftest import SECRET, alerts_settings, budget_body
from tests.alerts.receivers import SmtpServer, WebhookReceiver
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = pytest.mark.integration


async def _post(client: httpx.AsyncClient, key: str, amount: float) -> None:
    r = await client.post("/v1/events", json={"events": [usage_event(cost_usd=amount)]}, headers=auth(key))
    assert r.status_code == 202, r.text


async def _channels(client: httpx.AsyncClient, ws: dict[str, Any], budget_id: str) -> dict[str, Any] | None:
    r = await client.get(f"/v1/budgets/{budget_id}/alerts", headers=auth(ws["admin"]))
    alerts = r.json()["alerts"]
    return alerts[0]["channels"] if alerts and alerts[0]["channels"] else None


async def test_receiver_verifies_the_signature_and_refuses_a_replayed_delivery(
    iso: Isolation, receiver: WebhookReceiver, smtp: SmtpServer
) -> None:
    ws = await create_workspace(iso)
    async with serving(
        [create_ingest(iso.settings(IngestSettings)), create_alerts(alerts_settings(iso, smtp))]
    ) as client:
        r = await client.post("/v1/budgets", json=budget_body(receiver, thresholds=[50]), headers=auth(ws["admin"]))
        await _post(client, ws["ingest"], 60)
        await eventually(lambda: _len(receiver.accepted, 1), timeout=60)
        await eventually(lambda: _len(smtp.messages, 1), timeout=60)
        budget_id = r.json()["budget_id"]
        channels = await eventually(lambda: _channels(client, ws, budget_id), timeout=60)
    assert channels is not None
    delivered = receiver.raw[0]
    async with httpx.AsyncClient() as http:
        replayed = await http.post(
            receiver.url,
            content=delivered.body,
            headers={k: v for k, v in delivered.headers.items() if k.startswith("x-spendstream")},
        )
        tampered = await http.post(
            receiver.url,
            content=delivered.body.replace(b"60", b"10"),
            headers={k: v for k, v in delivered.headers.items() if k.startswith("x-spendstream")},
        )
    assert (replayed.status_code, tampered.status_code) == (409, 401)
    assert delivered.headers[SIGNATURE_HEADER.lower()].startswith("v1=")
    assert delivered.headers[TIMESTAMP_HEADER.lower()].isdigit()
    body = receiver.accepted[0]
    assert (body["kind"], body["threshold_pct"], body["spend_usd"]) == ("threshold", 50, "60.000000000")
    assert body["budget"] == {"name": "monthly", "scope": None}
    mail = smtp.messages[0]
    assert "50% of the" in str(mail["Subject"]) and mail["To"] == "finance@example.com"
    assert sorted(s["status"] for s in channels.values()) == ["delivered", "delivered"]
    assert all(s["attempts"] == 1 for s in channels.values())
    assert SECRET not in str(channels)


async def test_a_receiver_down_for_a_while_gets_the_alert_once_it_is_back(iso: Isolation) -> None:
    down = WebhookReceiver(secret=SECRET.encode())  # not started: connections are refused
    ws = await create_workspace(iso)
    async with serving(
        [
            create_ingest(iso.settings(IngestSettings)),
            create_alerts(alerts_settings(iso, delivery_max_attempts=20, delivery_backoff_max_seconds=0.3)),
        ]
    ) as client:
        r = await client.post(
            "/v1/budgets", json=budget_body(down, emails=[], thresholds=[50]), headers=auth(ws["admin"])
        )
        budget_id = r.json()["budget_id"]
        await _post(client, ws["ingest"], 60)

        async def retrying() -> bool:
            channels = await _channels(client, ws, budget_id)
            return channels is not None and all(
                c["status"] == "retrying" and c["attempts"] >= 2 for c in channels.values()
            )

        await eventually(retrying, timeout=60)
        await down.start()
        try:
            await eventually(lambda: _len(down.accepted, 1), timeout=60)

            async def delivered() -> dict[str, Any] | None:
                channels = await _channels(client, ws, budget_id)
                return channels if channels and all(c["status"] == "delivered" for c in channels.values()) else None

            channels = await eventually(delivered, timeout=60)
        finally:
            await down.stop()
    assert len(down.accepted) == 1
    [state] = channels.values()
    assert state["attempts"] >= 3 and state["code"] is None


async def test_a_receiver_that_never_answers_is_dead_lettered_after_the_bounded_attempts(iso: Isolation) -> None:
    never = WebhookReceiver(secret=SECRET.encode())
    ws = await create_workspace(iso)
    async with serving(
        [create_ingest(iso.settings(IngestSettings)), create_alerts(alerts_settings(iso, delivery_max_attempts=3))]
    ) as client:
        r = await client.post(
            "/v1/budgets", json=budget_body(never, emails=[], thresholds=[50]), headers=auth(ws["admin"])
        )
        budget_id = r.json()["budget_id"]
        await _post(client, ws["ingest"], 60)

        async def dead() -> dict[str, Any] | None:
            channels = await _channels(client, ws, budget_id)
            return channels if channels and all(c["status"] == "dead_lettered" for c in channels.values()) else None

        channels = await eventually(dead, timeout=60)
    [state] = channels.values()
    assert (state["attempts"], state["code"]) == (3, "connection_error")


async def test_webhooks_to_private_addresses_are_refused_unless_allowed(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    async with serving([create_alerts(alerts_settings(iso, webhook_allow_private=False))]) as client:
        for url in ("http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://169.254.169.254/latest", "http://[::1]/"):
            r = await client.post(
                "/v1/budgets", json=budget_body(None, webhooks=[{"url": url}]), headers=auth(ws["admin"])
            )
            assert r.status_code == 422, url
            assert r.json()["code"] == "private_address"


async def _len(items: list[Any], n: int) -> bool:
    return len(items) == n
