"""The whole product in one process (monolithic mode) with retention's clock in the test's hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from spendstream.alerts.app import create_service as create_alerts
from spendstream.alerts.settings import AlertsSettings
from spendstream.common.erasure import DeletionRequest
from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.settings import IngestSettings
from spendstream.people.app import create_service as create_people
from spendstream.people.settings import PeopleSettings
from spendstream.retention.app import Retention, build
from spendstream.retention.clock import Clock
from spendstream.retention.settings import RetentionSettings
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.settings import RollupSettings
from tests.retention.pipeline import raw_count
from tests.support import Isolation, auth, eventually, serving


@dataclass
class Product:
    client: httpx.AsyncClient
    retention: Retention

    async def stream(self, key: str, events: list[dict[str, Any]]) -> None:
        response = await self.client.post("/v1/events", json={"events": events}, headers=auth(key))
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == len(events)

    async def settled(self, workspace_id: str, request_id: str, timeout: float = 60) -> DeletionRequest:
        """The workspace's request once verified or failed."""

        async def check() -> DeletionRequest | None:
            request = self.retention.coordinator.get(workspace_id, request_id)
            return request if request is not None and request.terminal else None

        return await eventually(check, timeout=timeout)


@asynccontextmanager
async def product(
    iso: Isolation, clock: Clock | None = None, *, owners: bool = True, **retention: Any
) -> AsyncIterator[Product]:
    """ingest, rollup, alerts, people (unless owners=False) and retention, serving one ASGI app."""
    # Short command timeout only matters when a test moves the clock; the ticker itself stays out of the way.
    settings = iso.settings(RetentionSettings, tick_seconds=3600, **retention)
    running = build(settings, clock)
    services = (
        [
            create_ingest(iso.settings(IngestSettings)),
            create_rollup(iso.settings(RollupSettings)),
            create_alerts(iso.settings(AlertsSettings, rollup_url="")),
            create_people(iso.settings(PeopleSettings)),
        ]
        if owners
        else []
    )
    async with serving([*services, running.service]) as client:
        yield Product(client, running)


async def stored(iso: Isolation, workspace_id: str, n: int) -> None:
    """Wait until rollup stored exactly n events of the workspace."""

    async def check() -> bool:
        return raw_count(iso, "usage_events", "workspace_id = {ws:String}", {"ws": workspace_id}) == n

    await eventually(check, timeout=30)
