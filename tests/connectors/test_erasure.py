"""A workspace's deletion command removes its connectors (tombstones on their compacted topics), and only its
own."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from spendstream.common.erasure import DeletionCommand, ErasureScope
from spendstream.common.kafka import Publisher, make_broker
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import DELETION_COMMANDS
from spendstream.connectors.app import create_service
from spendstream.connectors.settings import ConnectorsSettings
from tests.support import Isolation, auth, create_workspace, eventually, serving

pytestmark = pytest.mark.integration


async def _command(iso: Isolation, request_id: str, scope: ErasureScope) -> None:
    broker = make_broker(iso.settings(BaseServiceSettings), "tests")
    await broker.connect()
    try:
        command = DeletionCommand(request_id=request_id, scope=scope, issued_at=datetime.now(UTC))
        await Publisher(broker, DELETION_COMMANDS, iso.prefix).publish(command, request_id)
    finally:
        await broker.stop()


async def _listed(client: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    connectors: list[dict[str, Any]] = (await client.get("/v1/connectors", headers=auth(key))).json()["connectors"]
    return connectors


async def test_a_workspace_erasure_removes_its_connectors_and_no_other_workspaces(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    other = await create_workspace(iso, "other")
    settings = iso.settings(ConnectorsSettings, connector_pull_seconds=3600)
    async with serving([create_service(settings)]) as client:
        for w in (ws, other):
            body = {"provider": "openai", "admin_key": "sk-admin-erasure-0000"}
            assert (await client.post("/v1/connectors", json=body, headers=auth(w["admin"]))).status_code == 201

        await _command(iso, "req-customer", ErasureScope(workspace_id=ws["workspace_id"], customer_id="cust-1"))
        await _command(iso, "req-ws", ErasureScope(workspace_id=ws["workspace_id"]))

        async def removed() -> bool:
            return await _listed(client, ws["admin"]) == []

        await eventually(removed, timeout=30)
        assert len(await _listed(client, other["admin"])) == 1
