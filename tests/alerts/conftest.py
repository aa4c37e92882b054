"""Fixtures of the alerts tests: the counters' backend, a real SMTP server, a real webhook receiver, alerts
settings for a test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from spendstream.alerts.settings import AlertsSettings
from tests.alerts.receivers import SmtpServer, WebhookReceiver
from tests.support import Isolation

SECRET = "test-signing-secret-0123456789"


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.integration), "memory"])
def backend(request: pytest.FixtureRequest) -> Isolation | None:
    """Where alerts' counters and markers live: the real Redis of an isolated test, or (None) the in-memory
    stand-in, so each decision is checked on both and the stand-in is held to the scripts' semantics."""
    if request.param == "redis":
        iso: Isolation = request.getfixturevalue("iso")
        return iso
    return None


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    hook = WebhookReceiver(secret=SECRET.encode())
    await hook.start()
    yield hook
    await hook.stop()


def alerts_settings(iso: Isolation, smtp: SmtpServer | None = None, **overrides: Any) -> AlertsSettings:
    """Fast sweeps and retries, deliveries to 127.0.0.1 allowed, reconciliation off unless asked for."""
    values: dict[str, Any] = {
        "webhook_allow_private": True,
        "delivery_backoff_seconds": 0.1,
        "delivery_backoff_max_seconds": 0.5,
        "sweep_interval_seconds": 0.5,
        "rollup_url": "",
        "smtp_starttls": False,
    }
    if smtp is not None:
        values.update(smtp_host="127.0.0.1", smtp_port=smtp.port)
    values.update(overrides)
    return iso.settings(AlertsSettings, **values)


def budget_body(receiver: WebhookReceiver | None = None, **overrides: Any) -> dict[str, Any]:
    """A 100 USD monthly budget with default thresholds, no forecast or spike (exact counts of thresholds)."""
    body: dict[str, Any] = {
        "name": "monthly",
        "amount_usd": "100",
        "forecast": False,
        "spike_multiple": None,
        "webhooks": [{"url": receiver.url, "secret": SECRET}] if receiver else [],
        "emails": ["finance@example.com"],
    }
    body.update(overrides)
    return body
