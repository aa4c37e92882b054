"""The saga's failure paths: a coordinator killed mid-deletion, owners that never answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from spendstream.common.erasure import DeletionCommand, DeletionRequest, Receipt, request_key
from spendstream.common.topics import AUDIT, DELETION_COMMANDS, DELETION_REQUESTS
from spendstream.retention.clock import ManualClock
from tests.retention.conftest import product, stored
from tests.retention.pipeline import publish, raw_count, replay
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


async def _latest(iso: Isolation, workspace_id: str, request_id: str) -> DeletionRequest:
    key = request_key(workspace_id, request_id).encode()
    records = [v for k, v in await replay(iso, DELETION_REQUESTS) if k == key]
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
    interrupted = await _latest(iso, ws["workspace_id"], "killed-1")
    assert interrupted.state in ("requested", "executing") and interrupted.reports == {}
    assert raw_count(iso, "usage_events", "workspace_id = {ws:String}", {"ws": ws["workspace_id"]}) == 3

    # Everything back, retention in a fresh process state: it resumes from the topic and ends verified.
    async with product(iso) as p:
        done = await p.settled(ws["workspace_id"], "killed-1")
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
            request = p.retention.coordinator.get(ws["workspace_id"], "silent-1")
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
        failed = p.retention.coordinator.get(ws["workspace_id"], "silent-1")
        assert failed is not None and failed.state == "failed"
        assert failed.reason == (
            "owners_incomplete:ingest:no_report,rollup:no_report,alerts:no_report,connectors:no_report,people:no_report"
        )
        status = await p.client.get("/v1/deletions/silent-1", headers=auth(ws["admin"]))
        assert status.json()["state"] == "failed" and status.json()["reason"] == failed.reason

    receipts = [
        Receipt.model_validate_json(v or b"")
        for k, v in await replay(iso, AUDIT)
        if k == f"{ws['workspace_id']}/silent-1".encode()
    ]
    assert len(receipts) == 1 and receipts[0].status == "failed" and receipts[0].owners == []


async def test_requests_keyed_by_their_bare_id_are_resumed_and_moved_under_their_workspace(iso: Isolation) -> None:
    """Records keyed by the request id alone (written before ids were per workspace, or by a tool that keys
    them so) are carried out as before, then rewritten under `<workspace>/<id>` and their old key tombstoned."""
    ws = await create_workspace(iso)
    workspace_id = ws["workspace_id"]
    now = datetime.now(UTC)
    in_flight = DeletionRequest(
        request_id="old-1",
        workspace_id=workspace_id,
        customer_id="cust-old",
        requested_by="key_old",
        requested_at=now,
        state="executing",
        revision=2,
        attempts=1,
        commanded_at=now,
    )
    finished = DeletionRequest(
        request_id="old-done",
        workspace_id=workspace_id,
        requested_by="cli",
        requested_at=now,
        state="failed",
        revision=5,
        reason="owners_incomplete:rollup:no_report",
    )
    for legacy in (in_flight, finished):
        await publish(iso, DELETION_REQUESTS, legacy.request_id, legacy.model_dump_json().encode())
    async with product(iso) as p:
        done = await p.settled(workspace_id, "old-1")
        assert done.state == "verified", done.reason
        status = await p.client.get("/v1/deletions/old-done", headers=auth(ws["admin"]))
        assert status.status_code == 200 and status.json()["reason"] == finished.reason
        # A tool submitting under the bare id while retention runs: carried out, then moved the same way.
        tool = DeletionRequest(request_id="tool-1", workspace_id=workspace_id, requested_by="tool", requested_at=now)
        await publish(iso, DELETION_REQUESTS, "tool-1", tool.model_dump_json().encode())
        assert (await p.settled(workspace_id, "tool-1")).state == "verified"

        async def moved() -> dict[bytes, bytes | None] | None:
            latest: dict[bytes, bytes | None] = {}
            for key, value in await replay(iso, DELETION_REQUESTS):
                if key is not None:
                    latest[key] = value
            bare = [latest.get(k.encode(), b"") for k in ("old-1", "old-done", "tool-1")]
            return latest if bare == [None, None, None] else None

        latest = await eventually(moved, timeout=30)
    for request_id in ("old-1", "old-done", "tool-1"):
        record = DeletionRequest.model_validate_json(latest[request_key(workspace_id, request_id).encode()] or b"")
        assert record.terminal and record.customer_id is None
    assert not any(b"cust-old" in (v or b"") for v in latest.values())


async def test_an_installation_without_connectors_lists_its_owners_and_its_erasures_end_verified(
    iso: Isolation,
) -> None:
    ws = await create_workspace(iso)
    async with product(iso, connectors=False, erasure_owners="ingest,rollup,alerts,people") as p:
        await p.stream(ws["ingest"], [usage_event(cost_usd=0.5, tags={"customer_id": "cust-nc"})])
        await stored(iso, ws["workspace_id"], 1)
        asked = await p.client.post(
            "/v1/deletions", json={"request_id": "no-conn", "customer_id": "cust-nc"}, headers=auth(ws["admin"])
        )
        assert asked.status_code == 202, asked.text
        done = await p.settled(ws["workspace_id"], "no-conn")
    assert done.state == "verified", done.reason
    assert done.receipt is not None and done.receipt.owner_names() == ["ingest", "rollup", "alerts", "people"]
