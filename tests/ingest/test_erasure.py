"""ingest as an erasure owner: a workspace deletion tombstones its keys and data keys, marks the workspace
deleted, removes ingest's Redis keys, verifies, and reports; repeats report again; customers hold nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from spendstream.common.erasure import DeletionCommand, DeletionReport, ErasureScope
from spendstream.common.kafka import make_broker
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.tenants import KeyRing
from spendstream.common.topics import DELETION_COMMANDS, DELETION_REPORTS, topic_name
from spendstream.ingest.app import create_service
from spendstream.ingest.settings import IngestSettings
from spendstream.ingest.workspaces import WorkspaceDirectory
from tests.ingest.topics import read_all
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = pytest.mark.integration


async def _command(iso: Isolation, request_id: str, scope: ErasureScope) -> None:
    settings = iso.settings(BaseServiceSettings)
    broker = make_broker(settings, "tests")
    await broker.connect()
    try:
        command = DeletionCommand(request_id=request_id, scope=scope, issued_at=datetime.now(UTC))
        await broker.publish(
            command.model_dump_json().encode(), topic_name(DELETION_COMMANDS, iso.prefix), key=request_id.encode()
        )
    finally:
        await broker.stop()


async def _reports(iso: Isolation, count: int) -> list[DeletionReport]:
    async def found() -> list[DeletionReport] | None:
        records = await read_all(iso.stack.kafka, topic_name(DELETION_REPORTS, iso.prefix))
        reports = [DeletionReport.model_validate_json(r.value) for r in records]
        return reports if len(reports) >= count else None

    return await eventually(found, timeout=60)


async def _ingest_keys(redis: aioredis.Redis, iso: Isolation, workspace_id: str) -> list[bytes]:
    return [k async for k in redis.scan_iter(match=f"{iso.prefix}ingest:*{{{workspace_id}}}*", count=1000)]


def _counts(report: DeletionReport) -> dict[str, tuple[int, int]]:
    return {
        c.store.split(".", 1)[-1] if c.store.startswith("kafka:") else c.store: (c.before, c.after)
        for c in report.counts
    }


async def test_workspace_erasure_deletes_keys_data_key_and_redis_state_then_reports(
    iso: Isolation, own_redis: tuple[str, Any]
) -> None:
    ws, other = await create_workspace(iso), await create_workspace(iso, "other")
    wid = ws["workspace_id"]
    # A Redis of the test's own: the shared one holds every other test's keys, which a SCAN would wade through.
    redis = aioredis.Redis.from_url(own_redis[0])
    foreign = f"{iso.prefix}alerts:fired:{{{wid}}}:x"  # another owner's key: not ingest's to delete
    try:
        await redis.set(foreign, b"1")
        # A slow bucket keeps its Redis key for minutes (a full bucket expires: it equals no bucket).
        settings = iso.settings(
            IngestSettings, rate_limit_events_per_second=1, rate_limit_burst_events=500, redis_url=own_redis[0]
        )
        async with serving([create_service(settings)]) as client:
            for key in (ws["ingest"], other["ingest"]):
                r = await client.post("/v1/events", json={"events": [usage_event(), usage_event()]}, headers=auth(key))
                assert r.status_code == 202
            ingest_keys = await _ingest_keys(redis, iso, wid)
            assert len(ingest_keys) == 3  # the dedupe set of the ids, the rate bucket, the month's quota counter

            await _command(iso, "req-1", ErasureScope(workspace_id=wid))
            (report,) = await _reports(iso, 1)

            async def refused() -> bool:
                r = await client.post("/v1/events", json={"events": [usage_event()]}, headers=auth(ws["ingest"]))
                return r.status_code == 401

            await eventually(refused, timeout=15)
            assert (await client.get("/v1/admin/keys", headers=auth(ws["admin"]))).status_code == 401
            still = await client.post("/v1/events", json={"events": [usage_event()]}, headers=auth(other["ingest"]))
            assert still.status_code == 202

            await _command(iso, "req-1", ErasureScope(workspace_id=wid))
            repeat = (await _reports(iso, 2))[1]

        assert (report.request_id, report.owner, report.status, report.reason) == ("req-1", "ingest", "done", None)
        assert report.scope == ErasureScope(workspace_id=wid)
        assert _counts(report) == {
            "ingest.apikeys.v1": (3, 0),
            "ingest.datakeys.v1": (1, 0),
            "ingest.workspaces.v1": (1, 0),
            "redis:ingest": (3, 0),
        }
        assert [v.result for v in report.verifications] == [0, 0, 0, 0]
        assert repeat.status == "done"
        assert _counts(repeat) == {
            "ingest.apikeys.v1": (0, 0),
            "ingest.datakeys.v1": (0, 0),
            "ingest.workspaces.v1": (0, 0),
            "redis:ingest": (0, 0),
        }

        assert await _ingest_keys(redis, iso, wid) == []
        assert await redis.exists(foreign) == 1
        assert await _ingest_keys(redis, iso, other["workspace_id"])
    finally:
        await redis.delete(foreign)
        await redis.aclose()

    # A fresh replica replaying the topics finds no data key and a name-less deleted marker.
    base = iso.settings(BaseServiceSettings)
    keyring, directory = KeyRing(base), WorkspaceDirectory(base)
    await keyring.table.start()
    await directory.table.start()
    try:
        assert keyring.current_version(wid) is None and keyring.records(wid) == {}
        assert await keyring.data_key(wid, 1) is None
        marker = directory.get(wid)
        assert marker is not None and (marker.status, marker.name) == ("deleted", "")
    finally:
        await keyring.table.stop()
        await directory.table.stop()


async def test_customer_erasure_reports_that_ingest_holds_nothing_per_customer(
    iso: Isolation, own_redis: tuple[str, Any]
) -> None:
    ws = await create_workspace(iso)
    async with serving([create_service(iso.settings(IngestSettings, redis_url=own_redis[0]))]) as client:
        await _command(iso, "req-c", ErasureScope(workspace_id=ws["workspace_id"], customer_id="cust-1"))
        (report,) = await _reports(iso, 1)
        ok = await client.post("/v1/events", json={"events": [usage_event()]}, headers=auth(ws["ingest"]))
    assert ok.status_code == 202
    assert (report.status, report.owner, report.scope.customer_id) == ("done", "ingest", "cust-1")
    assert [(c.before, c.after) for c in report.counts] == [(0, 0)]
    assert [v.result for v in report.verifications] == [0]


async def test_an_unparsable_command_is_skipped_and_the_next_one_is_carried_out(
    iso: Isolation, own_redis: tuple[str, Any]
) -> None:
    ws = await create_workspace(iso)
    settings = iso.settings(BaseServiceSettings)
    broker = make_broker(settings, "tests")
    await broker.connect()
    try:
        await broker.publish(b"\x00 not a command", topic_name(DELETION_COMMANDS, iso.prefix), key=b"junk")
    finally:
        await broker.stop()
    async with serving([create_service(iso.settings(IngestSettings, redis_url=own_redis[0]))]):
        await _command(iso, "req-2", ErasureScope(workspace_id=ws["workspace_id"]))
        reports: list[Any] = await _reports(iso, 1)
    assert [r.request_id for r in reports] == ["req-2"]
