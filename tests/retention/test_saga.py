"""The saga's failure paths: a coordinator killed mid-deletion, owners that never answer."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from spendstream.common.erasure import DeletionCommand, DeletionRequest, Receipt
from spendstream.common.topics import AUDIT, DELETION_COMMANDS, DELETION_REQUESTS
from spendstream.retention.clock import ManualClock
from tests.retention.conftest import product, stored
from tests.retention.pipeline import raw_count, replay
from tests.support import Isolation, ServiceProcess, auth, create_workspace, eventually, usage_event

pytestmark = [pytest.mark.integration]


async def _commands(iso: Isolation, request_id: str) -> int:
    return len(
        [
            1
            for _, v in await replay(iso, DELETION_COMMANDS)
            if DeletionCommand.model_validate_json(v or b"").request_id == request_id
        ]
    )


async def _latest(iso: Isolation, request_id: str) -> DeletionRequest:
    records = [v for k, v in await replay(iso, DELETION_REQUESTS) if k == request_id.encode()]
    return DeletionRequest.model_validate_json(records[-1] or b"")


@pytest.mark.e2e
async def test_retention_killed_after_the_commands_went_out_ends_verified_after_restart(
    iso: Isolation, tmp_path: Path
) -> None:
    ws = await create_workspace(iso)
    async with product(iso) as p:
        await p.stream(
            ws["ingest"], [usage_event(cost_usd=0.5), usage_event(cost_usd=0.25), usage_event(cost_usd=0.125)]
        )
        await stored(iso, ws["workspace_id"], 3)

    # retention as a real process, with every owner down: the command goes out and nobody answers yet.
    process = ServiceProcess("retention", iso.env(), tmp_path / "retention.log")
    process.start()
    try:
        async with httpx.AsyncClient(base_url=process.url) as client:
            asked = await client.post("/v1/deletions", json={"request_id": "killed-1"}, headers=auth(ws["admin"]))
            assert asked.status_code == 202, asked.text

        async def commanded() -> bool:
            return await _commands(iso, "killed-1") >= 1

        await eventually(commanded, timeout=30)
    finally:
        process.kill()  # SIGKILL: no shutdown hook runs
    interrupted = await _latest(iso, "killed-1")
    assert interrupted.state in ("requested", "executing") and interrupted.reports == {}
    assert raw_count(iso, "usage_events", "workspace_id = {ws:String}", {"ws": ws["workspace_id"]}) == 3

    # Everything back, retention in a fresh process state: it resumes from the topic and ends verified.
    async with product(iso) as p:
        done = await p.settled("killed-1")
    assert done.state == "verified", done.reason
    assert done.receipt is not None and done.receipt.requested_by.startswith("key_")
    counts = {c.store: (c.before, c.after) for o in done.receipt.owners for c in o.counts}
    assert counts["clickhouse:usage_events"] == (3, 0)
    assert raw_count(iso, "usage_events", "workspace_id = {ws:String}", {"ws": ws["workspace_id"]}) == 0


async def test_silent_owners_get_the_command_again_and_then_the_request_fails_naming_them(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    clock = ManualClock()
    async with product(iso, clock, owners=False, command_timeout_seconds=60, max_attempts=2) as p:
        asked = await p.client.post("/v1/deletions", json={"request_id": "silent-1"}, headers=auth(ws["admin"]))
        assert asked.status_code == 202

        async def executing() -> DeletionRequest | None:
            request = p.retention.coordinator.get("silent-1")
            return request if request is not None and request.state == "executing" else None

        await eventually(executing)
        assert await _commands(iso, "silent-1") == 1

        clock.advance(timedelta(seconds=59))
        await p.retention.tick()
        assert await _commands(iso, "silent-1") == 1
        clock.advance(timedelta(seconds=1))
        await p.retention.tick()
        assert await _commands(iso, "silent-1") == 2
        clock.advance(timedelta(seconds=60))
        await p.retention.tick()
        failed = p.retention.coordinator.get("silent-1")
        assert failed is not None and failed.state == "failed"
        assert failed.reason == "owners_incomplete:ingest:no_report,rollup:no_report,alerts:no_report"
        status = await p.client.get("/v1/deletions/silent-1", headers=auth(ws["admin"]))
        assert status.json()["state"] == "failed" and status.json()["reason"] == failed.reason

    receipts = [Receipt.model_validate_json(v or b"") for k, v in await replay(iso, AUDIT) if k == b"silent-1"]
    assert len(receipts) == 1 and receipts[0].status == "failed" and receipts[0].owners == []
