"""What the audit log's tests share: a service's audit publisher on the test's isolated topics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from spendstream.common.audit import AuditTrail
from spendstream.common.kafka import make_broker
from spendstream.common.settings import BaseServiceSettings
from tests.support import Isolation


@asynccontextmanager
async def trail(iso: Isolation, service: str = "people") -> AsyncIterator[AuditTrail]:
    """A service's audit publisher on the test's topics, as every service holds one."""
    settings = iso.settings(BaseServiceSettings)
    broker = make_broker(settings, f"tests-{service}")
    await broker.connect()
    try:
        yield AuditTrail(settings, broker, service)
    finally:
        await broker.stop()
