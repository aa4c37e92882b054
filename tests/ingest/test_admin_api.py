"""The workspace admin API: keys issued once, listed without secrets, revoked on every replica within seconds;
data-key rotation; cancel and reactivate announced to retention."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from spendstream.common.erasure import LifecycleEvent
from spendstream.common.kafka import make_broker
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import LIFECYCLE, topic_name
from spendstream.ingest.app import create_service
from spendstream.ingest.settings import IngestSettings
from spendstream.ingest.workspaces import ControlPlane, WorkspaceDirectory
from tests.ingest.topics import read_all
from tests.support import (
    Isolation,
    audit_records,
    auth,
    create_workspace,
    eventually,
    member_key,
    serving,
    usage_event,
)

pytestmark = pytest.mark.integration


async def test_issued_key_works_is_listed_without_secret_and_revocation_reaches_a_second_replica(
    iso: Isolation,
) -> None:
    ws = await create_workspace(iso)
    settings = iso.settings(IngestSettings)
    async with serving([create_service(settings)]) as one, serving([create_service(settings)]) as two:
        issued = await one.post("/v1/admin/keys", json={"scope": "ingest"}, headers=auth(ws["admin"]))
        assert issued.status_code == 201, issued.text
        key, key_id = issued.json()["key"], issued.json()["key_id"]

        async def accepted_by_two() -> bool:
            r = await two.post("/v1/events", json={"events": [usage_event()]}, headers=auth(key))
            return r.status_code == 202

        await eventually(accepted_by_two, timeout=15)
        listing = await one.get("/v1/admin/keys", headers=auth(ws["admin"]))
        assert listing.status_code == 200
        assert key_id in {k["key_id"] for k in listing.json()}
        assert key not in listing.text and "hash" not in listing.text

        revoked = await one.delete(f"/v1/admin/keys/{key_id}", headers=auth(ws["admin"]))
        assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None

        async def refused_by_two() -> bool:
            r = await two.post("/v1/events", json={"events": [usage_event()]}, headers=auth(key))
            return r.status_code == 401

        await eventually(refused_by_two, timeout=15)
        assert (await one.post("/v1/events", json={"events": [usage_event()]}, headers=auth(key))).status_code == 401
        # The workspace's other keys are untouched.
        ok = await two.post("/v1/events", json={"events": [usage_event()]}, headers=auth(ws["ingest"]))
        assert ok.status_code == 202


async def test_admin_routes_need_an_admin_key_of_the_same_workspace(iso: Isolation) -> None:
    ws, other = await create_workspace(iso), await create_workspace(iso, "other")
    async with serving([create_service(iso.settings(IngestSettings))]) as client:
        assert (await client.get("/v1/admin/keys", headers=auth(ws["ingest"]))).status_code == 403
        assert (await client.get("/v1/admin/keys")).status_code == 401
        theirs = (await client.get("/v1/admin/keys", headers=auth(other["admin"]))).json()
        foreign = await client.delete(f"/v1/admin/keys/{theirs[0]['key_id']}", headers=auth(ws["admin"]))
        assert (foreign.status_code, foreign.json()) == (
            404,
            {"error": "unknown_key", "message": "no such key in this workspace"},
        )
    # The refused revocation is on the audit log as allowed by the table, then failed.
    records = [
        r for r in await audit_records(iso) if r.action == "keys.manage" and r.workspace_id == ws["workspace_id"]
    ]
    assert [(r.outcome, r.target) for r in records] == [
        ("allowed", theirs[0]["key_id"]),
        ("failure", theirs[0]["key_id"]),
    ]
    assert records[0].request_id == records[1].request_id


async def test_rotated_data_key_seals_new_batches_with_the_new_version(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    async with serving([create_service(iso.settings(IngestSettings))]) as client:
        r = await client.post("/v1/admin/data-key/rotate", headers=auth(ws["admin"]))
        assert r.json() == {"current_version": 2}
        info = await client.get("/v1/admin/workspace", headers=auth(ws["admin"]))
        assert info.json()["data_key_version"] == 2
        sent = await client.post("/v1/events", json={"events": [usage_event()]}, headers=auth(ws["ingest"]))
        assert sent.status_code == 202


async def test_cancel_refuses_events_announces_it_and_reactivate_undoes_it(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    async with serving([create_service(iso.settings(IngestSettings))]) as client:
        cancelled = await client.post("/v1/admin/workspace/cancel", headers=auth(ws["admin"]))
        assert cancelled.json()["status"] == "cancelled" and cancelled.json()["cancelled_at"]
        refused = await client.post("/v1/events", json={"events": [usage_event()]}, headers=auth(ws["ingest"]))
        assert (refused.status_code, refused.json()["error"]) == (403, "workspace_cancelled")
        reactivated = await client.post("/v1/admin/workspace/reactivate", headers=auth(ws["admin"]))
        assert reactivated.json()["status"] == "active"
        ok = await client.post("/v1/events", json={"events": [usage_event()]}, headers=auth(ws["ingest"]))
        assert ok.status_code == 202
    records = await read_all(iso.stack.kafka, topic_name(LIFECYCLE, iso.prefix))
    events = [LifecycleEvent.model_validate_json(r.value) for r in records]
    assert [(r.key.decode(), e.workspace_id, e.kind) for r, e in zip(records, events, strict=True)] == [
        (ws["workspace_id"], ws["workspace_id"], "cancelled"),
        (ws["workspace_id"], ws["workspace_id"], "reactivated"),
    ]


async def test_keys_of_a_deleted_workspace_are_401(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    settings = iso.settings(BaseServiceSettings)
    directory = WorkspaceDirectory(settings)
    await directory.table.start()
    record = directory.get(ws["workspace_id"])
    await directory.table.stop()
    assert record is not None
    async with serving([create_service(iso.settings(IngestSettings))]) as client:
        broker = make_broker(settings, "tests")
        await broker.connect()
        try:
            await ControlPlane(settings, broker).put_workspace(
                record.model_copy(update={"status": "deleted", "cancelled_at": datetime.now(UTC)})
            )
        finally:
            await broker.stop()

        async def refused() -> bool:
            r = await client.post("/v1/events", json={"events": [usage_event()]}, headers=auth(ws["ingest"]))
            return r.status_code == 401

        await eventually(refused, timeout=15)
        assert (await client.get("/v1/admin/keys", headers=auth(ws["admin"]))).status_code == 401


async def test_a_member_issues_ingest_and_read_keys_capped_by_their_role_and_never_an_admin_key(
    iso: Isolation,
) -> None:
    ws = await create_workspace(iso)
    member_id, key = await member_key(iso, ws["workspace_id"], "member")
    async with serving([create_service(iso.settings(IngestSettings))]) as client:
        refused = await client.post("/v1/admin/keys", json={"scope": "admin"}, headers=auth(key))
        assert refused.status_code == 403
        assert "keys.manage" in refused.json()["message"]
        issued = await client.post("/v1/admin/keys", json={"scope": "read"}, headers=auth(key))
        assert issued.status_code == 201, issued.text
        listed = await client.get("/v1/admin/keys", headers=auth(ws["admin"]))
        mine = next(k for k in listed.json() if k["key_id"] == issued.json()["key_id"])
        # The new key records the member behind the calling key, so it is capped by (and ends with) them too.
        assert mine["issued_by"] == member_id
        assert all(
            k["issued_by"] is None for k in listed.json() if k["key_id"] != mine["key_id"] and k["scope"] != "admin"
        )
        # An ingest key the member issues sends events, which the member could not do by hand.
        metering = await client.post("/v1/admin/keys", json={"scope": "ingest"}, headers=auth(key))
        assert metering.status_code == 201, metering.text

        async def sent() -> bool:  # the serving ingest replays its own new key within a poll
            answer = await client.post(
                "/v1/events", json={"events": [usage_event()]}, headers=auth(metering.json()["key"])
            )
            assert answer.status_code in (202, 401), answer.text
            return answer.status_code == 202

        await eventually(sent)
        # A member may not revoke keys (keys.manage) nor cancel the workspace (workspace.lifecycle).
        assert (await client.delete(f"/v1/admin/keys/{mine['key_id']}", headers=auth(key))).status_code == 403
        assert (await client.post("/v1/admin/workspace/cancel", headers=auth(key))).status_code == 403
        assert (await client.get("/v1/admin/workspace", headers=auth(ws["admin"]))).json()["status"] == "active"
