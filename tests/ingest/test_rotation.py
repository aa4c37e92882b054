"""Data-key rotation stays bounded: one constant-size record per version, one rotation per workspace per interval
(429 with Retry-After), retired versions removed once no retained envelope can use them, records of the older
whole-set layout still read, and an erasure tombstones every version of either layout."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from faststream.kafka import KafkaBroker

from spendstream.common import crypto, datakeys
from spendstream.common.erasure import DeletionCommand, DeletionReport, ErasureScope
from spendstream.common.kafka import Publisher, make_broker
from spendstream.common.records import WorkspaceRecord
from spendstream.common.tenants import KeyDirectory, KeyRing
from spendstream.common.topics import DATA_KEYS, DELETION_COMMANDS, DELETION_REPORTS, WORKSPACES, topic_name
from spendstream.ingest.admin import Admin, AdminError
from spendstream.ingest.app import create_service
from spendstream.ingest.datakey_upkeep import DataKeyUpkeep
from spendstream.ingest.settings import IngestSettings
from spendstream.ingest.workspaces import ControlPlane, WorkspaceDirectory
from tests.ingest.topics import read_all
from tests.support import Isolation, auth, create_workspace, eventually, serving

pytestmark = pytest.mark.integration

ROTATIONS = 200


@dataclass
class Plane:
    settings: IngestSettings
    broker: KafkaBroker
    control: ControlPlane
    keyring: KeyRing
    workspaces: WorkspaceDirectory

    def admin(self, interval: timedelta) -> Admin:
        return Admin(
            self.control, KeyDirectory(self.settings), self.keyring, self.workspaces, rotation_interval=interval
        )


@asynccontextmanager
async def plane(iso: Isolation) -> AsyncIterator[Plane]:
    settings = iso.settings(IngestSettings)
    broker = make_broker(settings, "tests")
    await broker.connect()
    keyring, workspaces = KeyRing(settings), WorkspaceDirectory(settings)
    await keyring.table.start()
    await workspaces.table.start()
    try:
        yield Plane(settings, broker, ControlPlane(settings, broker), keyring, workspaces)
    finally:
        await workspaces.table.stop()
        await keyring.table.stop()
        await broker.stop()


async def _records(iso: Isolation, workspace_id: str) -> dict[str, list[bytes | None]]:
    """Every value written for each data-key record of the workspace, in order."""
    found: dict[str, list[bytes | None]] = {}
    for r in await read_all(iso.stack.kafka, topic_name(DATA_KEYS, iso.prefix)):
        if datakeys.parse_record_key(r.key.decode())[0] == workspace_id:
            found.setdefault(r.key.decode(), []).append(r.value)
    return found


async def test_many_rotations_write_constant_size_records_and_a_fresh_replica_reads_every_version(
    iso: Isolation,
) -> None:
    wid = (await create_workspace(iso))["workspace_id"]
    async with plane(iso) as p:
        # Through the control plane (what a rotation writes) for speed; the last ones through Admin.
        for version in range(2, ROTATIONS):
            await p.control.put_data_key(wid, version)
        admin = p.admin(timedelta(0))
        for expected in (ROTATIONS, ROTATIONS + 1):
            assert await admin.rotate_data_key(wid) == expected
        keys = {v: await p.keyring.data_key(wid, v) for v in range(1, ROTATIONS + 2)}

    sizes = [len(v) for values in (await _records(iso, wid)).values() for v in values if v is not None]
    assert len(sizes) == ROTATIONS + 1
    # The record a rotation writes does not grow with the number of rotations before it.
    assert max(sizes) - min(sizes) <= 4, (min(sizes), max(sizes))
    assert max(sizes) < 400

    fresh = KeyRing(iso.settings(IngestSettings))
    started = time.perf_counter()
    await fresh.table.start()
    try:
        replay = time.perf_counter() - started
        assert fresh.current_version(wid) == ROTATIONS + 1
        assert {v: await fresh.data_key(wid, v) for v in keys} == keys
        assert len(set(keys.values())) == len(keys)
        assert replay < 10  # measured figures: docs/reliability.md
    finally:
        await fresh.table.stop()


async def test_a_second_rotation_within_the_interval_is_429_with_retry_after(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    settings = iso.settings(IngestSettings, data_key_rotation_interval_seconds=3600)
    async with serving([create_service(settings)]) as client:
        first = await client.post("/v1/admin/data-key/rotate", headers=auth(ws["admin"]))
        assert first.json() == {"current_version": 2}
        again = await client.post("/v1/admin/data-key/rotate", headers=auth(ws["admin"]))
        assert again.status_code == 429
        assert again.json()["error"] == "rotation_rate_limited"
        assert 3590 <= int(again.headers["retry-after"]) <= 3600
        assert "retry in" in again.json()["message"]
        info = await client.get("/v1/admin/workspace", headers=auth(ws["admin"]))
        assert info.json()["data_key_version"] == 2

    # Another workspace is not limited by this one; the CLI's Admin refuses the same way.
    other = (await create_workspace(iso, "other"))["workspace_id"]
    async with plane(iso) as p:
        admin = p.admin(timedelta(hours=1))
        assert await admin.rotate_data_key(other) == 2
        with pytest.raises(AdminError) as refused:
            await admin.rotate_data_key(ws["workspace_id"])
        assert (refused.value.status, refused.value.code) == (429, "rotation_rate_limited")


async def test_upkeep_removes_versions_retired_longer_than_the_lifetime_and_keeps_the_current(iso: Isolation) -> None:
    wid = (await create_workspace(iso))["workspace_id"]
    async with plane(iso) as p:
        admin = p.admin(timedelta(0))
        for _ in range(3):
            await admin.rotate_data_key(wid)
        lifetime = datakeys.retired_lifetime()
        now = datetime.now(UTC)
        assert await DataKeyUpkeep(p.control, p.keyring, clock=lambda: now).run() == 0
        assert await DataKeyUpkeep(p.control, p.keyring, clock=lambda: now + lifetime + timedelta(minutes=1)).run() == 3
        assert [v.version for v in p.keyring.versions(wid)] == [4]
        assert await p.keyring.data_key(wid, 1) is None and await p.keyring.data_key(wid, 4) is not None

    records = await _records(iso, wid)
    assert {k: v[-1] is None for k, v in records.items()} == {
        datakeys.record_key(wid, 1): True,
        datakeys.record_key(wid, 2): True,
        datakeys.record_key(wid, 3): True,
        datakeys.record_key(wid, 4): False,
    }


async def _legacy_workspace(iso: Isolation, p: Plane) -> tuple[str, crypto.WrappedKeySet]:
    """A workspace whose data keys (versions 1 and 2) sit in one whole-set record, as written before."""
    kek = p.settings.kek_bytes()
    wid = "ws_legacy0000000000000000000000000"
    first = crypto.new_key_set(wid, kek, p.settings.kek_identity())
    second = crypto.new_version(wid, 2, kek, p.settings.kek_identity())
    key_set = first.model_copy(
        update={
            "current": 2,
            "keys": (
                *first.keys,
                crypto.WrappedKey(version=2, wrapped=second.wrapped, created_at=second.created_at),
            ),
        }
    )
    await Publisher(p.broker, DATA_KEYS, iso.prefix).publish(key_set, wid)
    record = WorkspaceRecord(
        workspace_id=wid, name="legacy", plan="team", monthly_event_quota=-1, created_at=datetime.now(UTC)
    )
    await Publisher(p.broker, WORKSPACES, iso.prefix).publish(record, wid)
    await p.keyring.table.catch_up()
    await p.workspaces.table.catch_up()
    return wid, key_set


async def test_a_whole_set_record_is_read_rotated_past_and_removed_once_expired(iso: Isolation) -> None:
    async with plane(iso) as p:
        wid, key_set = await _legacy_workspace(iso, p)
        kek = p.settings.kek_bytes()
        assert p.keyring.current_version(wid) == 2
        assert await p.keyring.data_key(wid, 1) == crypto.unwrap(key_set, 1, kek)
        assert await p.keyring.data_key(wid, 2) == crypto.unwrap(key_set, 2, kek)

        assert await p.admin(timedelta(0)).rotate_data_key(wid) == 3
        assert set(p.keyring.records(wid)) == {wid, datakeys.record_key(wid, 3)}
        # The whole-set record stays as long as its newest version may still decrypt retained envelopes.
        soon = datetime.now(UTC) + timedelta(hours=1)
        assert await DataKeyUpkeep(p.control, p.keyring, clock=lambda: soon).run() == 0
        later = datetime.now(UTC) + datakeys.retired_lifetime() + timedelta(minutes=1)
        assert await DataKeyUpkeep(p.control, p.keyring, clock=lambda: later).run() == 1
        assert set(p.keyring.records(wid)) == {datakeys.record_key(wid, 3)}
        assert await p.keyring.data_key(wid, 2) is None and await p.keyring.data_key(wid, 3) is not None


async def test_erasure_tombstones_every_version_of_both_layouts(iso: Isolation) -> None:
    async with plane(iso) as p:
        wid, _ = await _legacy_workspace(iso, p)
        admin = p.admin(timedelta(0))
        await admin.rotate_data_key(wid)
        await admin.rotate_data_key(wid)
        assert len(p.keyring.records(wid)) == 3
        async with serving([create_service(iso.settings(IngestSettings))]):
            command = DeletionCommand(
                request_id="req-rot", scope=ErasureScope(workspace_id=wid), issued_at=datetime.now(UTC)
            )
            await p.broker.publish(
                command.model_dump_json().encode(), topic_name(DELETION_COMMANDS, iso.prefix), key=b"req-rot"
            )

            async def reported() -> DeletionReport | None:
                found = await read_all(iso.stack.kafka, topic_name(DELETION_REPORTS, iso.prefix))
                return DeletionReport.model_validate_json(found[0].value) if found else None

            report = await eventually(reported, timeout=60)
        assert report.status == "done"
        counts = {c.store.split(".", 1)[-1]: (c.before, c.after) for c in report.counts}
        assert counts["ingest.datakeys.v1"] == (3, 0)
        await p.keyring.table.catch_up()
        assert p.keyring.current_version(wid) is None
        assert [await p.keyring.data_key(wid, v) for v in (1, 2, 3, 4)] == [None] * 4

    records = await _records(iso, wid)
    assert set(records) == {wid, datakeys.record_key(wid, 3), datakeys.record_key(wid, 4)}
    assert all(values[-1] is None for values in records.values())
