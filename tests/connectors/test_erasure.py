"""connectors as an owner of the erasure saga: a workspace's deletion command removes its connectors (their
sealed admin keys) and cursors, and only its own, and reports the counts; a repeat reports zero; a customer's
command touches nothing and reports done with zero counts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from spendstream.common.erasure import DeletionCommand, DeletionReport, ErasureScope
from spendstream.common.kafka import Publisher, make_broker
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import CONNECTORS_STATE, DELETION_COMMANDS, DELETION_REPORTS
from spendstream.connectors.app import create_service
from spendstream.connectors.settings import ConnectorsSettings
from tests.connectors.fake_providers import provider_server
from tests.retention.pipeline import replay
from tests.support import Isolation, auth, create_workspace, eventually, serving

pytestmark = pytest.mark.integration

ADMIN_KEY = "sk-admin-erasure-0000"


async def _command(iso: Isolation, request_id: str, scope: ErasureScope) -> None:
    broker = make_broker(iso.settings(BaseServiceSettings), "tests")
    await broker.connect()
    try:
        command = DeletionCommand(request_id=request_id, scope=scope, issued_at=datetime.now(UTC))
        await Publisher(broker, DELETION_COMMANDS, iso.prefix).publish(command, request_id)
    finally:
        await broker.stop()


async def _reports(iso: Isolation, request_id: str, at_least: int = 1) -> list[DeletionReport]:
    async def found() -> list[DeletionReport] | None:
        reports = [DeletionReport.model_validate_json(v or b"") for _, v in await replay(iso, DELETION_REPORTS)]
        mine = [r for r in reports if r.request_id == request_id and r.owner == "connectors"]
        return mine if len(mine) >= at_least else None

    return await eventually(found, timeout=30)


async def _listed(client: httpx.AsyncClient, key: str) -> list[dict[str, Any]]:
    connectors: list[dict[str, Any]] = (await client.get("/v1/connectors", headers=auth(key))).json()["connectors"]
    return connectors


def _counts(report: DeletionReport) -> dict[str, tuple[int, int]]:
    return {c.store: (c.before, c.after) for c in report.counts}


async def test_a_workspace_erasure_removes_its_connectors_and_cursors_reports_them_and_spares_the_others(
    iso: Isolation,
) -> None:
    ws = await create_workspace(iso)
    other = await create_workspace(iso, "other")
    with provider_server("openai", ADMIN_KEY) as (url, _):
        settings = iso.settings(
            ConnectorsSettings, connector_openai_base_url=url, connector_backfill_days=2, connector_pull_seconds=3600
        )
        async with serving([create_service(settings)]) as client:
            for w, n in ((ws, 2), (other, 1)):
                for _ in range(n):
                    body = {"provider": "openai", "admin_key": ADMIN_KEY}
                    created = await client.post("/v1/connectors", json=body, headers=auth(w["admin"]))
                    assert created.status_code == 201, created.text

            async def pulled() -> bool:  # every connector has a cursor: the erasure has those to remove too
                listed = [c for w in (ws, other) for c in await _listed(client, w["admin"])]
                return len(listed) == 3 and all(c["status"] == "ok" for c in listed)

            await eventually(pulled, timeout=30)

            # A customer's erasure: connectors hold nothing per end customer.
            await _command(iso, "req-customer", ErasureScope(workspace_id=ws["workspace_id"], customer_id="cust-1"))
            (customer,) = await _reports(iso, "req-customer")
            assert customer.status == "done" and customer.scope.customer_id == "cust-1"
            assert _counts(customer) == {"kafka:connectors.config.v1": (0, 0), "kafka:connectors.state.v1": (0, 0)}
            assert len(await _listed(client, ws["admin"])) == 2

            await _command(iso, "req-ws", ErasureScope(workspace_id=ws["workspace_id"]))
            (first,) = await _reports(iso, "req-ws")
            assert first.status == "done", first.reason
            assert _counts(first) == {"kafka:connectors.config.v1": (2, 0), "kafka:connectors.state.v1": (2, 0)}
            assert first.verifications and all(v.result == 0 for v in first.verifications)
            assert await _listed(client, ws["admin"]) == []
            assert len(await _listed(client, other["admin"])) == 1

            # The command again (retention re-sends to a silent owner): nothing more to delete, reported again.
            await _command(iso, "req-ws", ErasureScope(workspace_id=ws["workspace_id"]))
            again = (await _reports(iso, "req-ws", at_least=2))[1]
            assert again.status == "done"
            assert _counts(again) == {"kafka:connectors.config.v1": (0, 0), "kafka:connectors.state.v1": (0, 0)}
    latest: dict[bytes, bytes | None] = {}
    for key, value in await replay(iso, CONNECTORS_STATE):
        if key is not None:
            latest[key] = value
    assert [k for k, v in latest.items() if v is not None and k.startswith(ws["workspace_id"].encode())] == []
    assert len([k for k, v in latest.items() if v is not None and k.startswith(other["workspace_id"].encode())]) == 1
