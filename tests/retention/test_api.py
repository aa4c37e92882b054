"""The deletion API: the workspace from the key, idempotent by request id; the list of a workspace's requests
and the retention policy it is under."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from prometheus_client import REGISTRY

from spendstream.common.erasure import DeletionRequest, LifecycleEvent
from spendstream.common.service import build_http_app
from spendstream.common.topics import DELETION_REQUESTS, LIFECYCLE
from spendstream.retention.app import build
from spendstream.retention.clock import ManualClock
from spendstream.retention.schedules import lifecycle_request_id
from spendstream.retention.settings import RetentionSettings
from tests.retention.conftest import product
from tests.retention.pipeline import publish
from tests.support import Isolation, auth, create_workspace, eventually, member_key

pytestmark = [pytest.mark.integration]


async def test_deletion_requests_need_an_admin_key_and_see_only_their_workspace(iso: Isolation) -> None:
    mine, theirs = await create_workspace(iso, "mine"), await create_workspace(iso, "theirs")
    # No owners run: requests stay `executing`, which is all these checks need.
    async with product(iso, owners=False) as p:
        c = p.client
        assert (await c.post("/v1/deletions", json={})).status_code == 401
        assert (await c.post("/v1/deletions", json={}, headers=auth(mine["read"]))).status_code == 403
        assert (await c.post("/v1/deletions", json={}, headers=auth(mine["ingest"]))).status_code == 403
        refused = await c.post(
            "/v1/deletions",
            json={"customer_id": "x", "workspace_id": theirs["workspace_id"]},
            headers=auth(mine["admin"]),
        )
        # The workspace is never taken from the body: a field naming one is refused, and not echoed.
        assert refused.status_code == 422 and theirs["workspace_id"] not in refused.text

        first = await c.post(
            "/v1/deletions", json={"customer_id": "cust-7", "request_id": "r-1"}, headers=auth(mine["admin"])
        )
        assert first.status_code == 202
        body = first.json()
        assert body["workspace_id"] == mine["workspace_id"] and body["subject"] == "customer"
        assert body["requested_by"].startswith("key_") and "cust-7" not in first.text
        assert mine["admin"] not in first.text

        again = await c.post(
            "/v1/deletions", json={"customer_id": "cust-7", "request_id": "r-1"}, headers=auth(mine["admin"])
        )
        assert again.status_code == 200 and again.json()["requested_at"] == body["requested_at"]
        other_scope = await c.post("/v1/deletions", json={"request_id": "r-1"}, headers=auth(mine["admin"]))
        assert other_scope.status_code == 409
        # Another workspace's use of the same id is neither refused nor revealed: the id names its own request.
        reused = await c.post("/v1/deletions", json={"request_id": "r-1"}, headers=auth(theirs["admin"]))
        assert reused.status_code == 202, reused.text
        assert reused.json()["workspace_id"] == theirs["workspace_id"] and reused.json()["subject"] == "workspace"

        status = await c.get("/v1/deletions/r-1", headers=auth(mine["admin"]))
        assert status.status_code == 200 and status.json()["state"] in ("requested", "executing")
        assert status.json()["reported"] == [] and status.json()["receipt"] is None
        theirs_status = await c.get("/v1/deletions/r-1", headers=auth(theirs["admin"]))
        assert theirs_status.status_code == 200 and theirs_status.json()["workspace_id"] == theirs["workspace_id"]
        assert theirs_status.json()["subject"] == "workspace" and status.json()["subject"] == "customer"
        assert (await c.get("/v1/deletions/nope", headers=auth(mine["admin"]))).status_code == 404
        # A read key follows a request (deletions.read); an ingest key does not.
        assert (await c.get("/v1/deletions/r-1", headers=auth(mine["read"]))).status_code == 200
        assert (await c.get("/v1/deletions/r-1", headers=auth(mine["ingest"]))).status_code == 403


async def test_guessing_admin_keys_gets_429_with_retry_after_and_another_clients_valid_key_still_answers(
    iso: Isolation,
) -> None:
    """The shared key check (`spendstream.common.http_auth`, as rollup, alerts and retention use it) brakes."""
    ws = await create_workspace(iso)
    running = build(iso.settings(RetentionSettings, tick_seconds=3600, auth_failures_per_address=4))
    app = build_http_app([running.service])

    def client(address: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(address, 1)), base_url="http://t")

    async with app.router.lifespan_context(app), client("203.0.113.9") as guesser, client("198.51.100.4") as other:
        before = REGISTRY.get_sample_value("spendstream_auth_throttled_total", {"limit": "address"}) or 0.0
        answers = [await guesser.get("/v1/deletions/r-1", headers=auth(f"ssk_admin_wrong{i:06d}")) for i in range(6)]
        assert [a.status_code for a in answers] == [401] * 4 + [429] * 2
        assert all(1 <= int(a.headers["Retry-After"]) <= 60 for a in answers[4:])
        assert REGISTRY.get_sample_value("spendstream_auth_throttled_total", {"limit": "address"}) == before + 2
        assert (await other.get("/v1/deletions/r-1", headers=auth(ws["admin"]))).status_code == 404


async def test_an_admin_erases_a_customer_and_only_an_owner_the_whole_workspace(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    _, admins = await member_key(iso, ws["workspace_id"], "admin")
    _, owners = await member_key(iso, ws["workspace_id"], "owner")
    async with product(iso, owners=False) as p:
        c = p.client
        whole = await c.post("/v1/deletions", json={"request_id": "w-1"}, headers=auth(admins))
        assert whole.status_code == 403
        assert "erasures.workspace" in whole.json()["message"]
        assert (await c.get("/v1/deletions/w-1", headers=auth(ws["admin"]))).status_code == 404  # nothing asked
        customer = await c.post("/v1/deletions", json={"customer_id": "cust-9"}, headers=auth(admins))
        assert customer.status_code == 202, customer.text
        assert customer.json()["subject"] == "customer"
        whole = await c.post("/v1/deletions", json={"request_id": "w-2"}, headers=auth(owners))
        assert whole.status_code == 202, whole.text
        assert whole.json()["subject"] == "workspace"


async def test_the_list_shows_every_request_of_the_callers_workspace_newest_first_a_page_at_a_time(
    iso: Isolation,
) -> None:
    mine, theirs = await create_workspace(iso, "mine"), await create_workspace(iso, "theirs")
    t0 = datetime.now(UTC)
    clock = ManualClock(t0)
    async with product(iso, clock, owners=False) as p:
        c = p.client
        for request_id, body in (("r-a", {}), ("r-b", {"customer_id": "cust-secret-1"}), ("r-c", {})):
            clock.advance(timedelta(minutes=1))
            made = await c.post("/v1/deletions", json={**body, "request_id": request_id}, headers=auth(mine["admin"]))
            assert made.status_code == 202, made.text
        clock.advance(timedelta(seconds=30))
        assert (
            await c.post("/v1/deletions", json={"request_id": "t-1"}, headers=auth(theirs["admin"]))
        ).status_code == 202
        # Made elsewhere: a compliance tool's request on Kafka, newest of all; the list shows it as well.
        tool = DeletionRequest(
            request_id="tool-1",
            workspace_id=mine["workspace_id"],
            customer_id="cust-secret-2",
            requested_by="tool",
            requested_at=t0 + timedelta(minutes=10),
        )
        await publish(iso, DELETION_REQUESTS, tool.key, tool.model_dump_json().encode())

        async def taken() -> DeletionRequest | None:
            return p.retention.coordinator.get(mine["workspace_id"], "tool-1")

        await eventually(taken, timeout=30)

        listed = await c.get("/v1/deletions", headers=auth(mine["admin"]))
        assert listed.status_code == 200, listed.text
        rows = listed.json()["deletions"]
        assert [r["request_id"] for r in rows] == ["tool-1", "r-c", "r-b", "r-a"]
        assert listed.json()["next_cursor"] is None
        assert [r["subject"] for r in rows] == ["customer", "workspace", "customer", "workspace"]
        assert all(r["state"] in ("requested", "executing") and r["completed_at"] is None for r in rows)
        assert (
            rows[1]["requested_at"]
            == (await c.get("/v1/deletions/r-c", headers=auth(mine["admin"]))).json()["requested_at"]
        )
        # As the single request's route: the keyed hash, never the customer id; never another workspace's.
        assert "cust-secret" not in listed.text and rows[2]["customer_hash"]
        assert "t-1" not in listed.text and theirs["workspace_id"] not in listed.text
        theirs_listed = await c.get("/v1/deletions", headers=auth(theirs["admin"]))
        assert [r["request_id"] for r in theirs_listed.json()["deletions"]] == ["t-1"]
        assert mine["workspace_id"] not in theirs_listed.text

        first = await c.get("/v1/deletions", params={"limit": 3}, headers=auth(mine["read"]))
        assert [r["request_id"] for r in first.json()["deletions"]] == ["tool-1", "r-c", "r-b"]
        cursor = first.json()["next_cursor"]
        assert cursor
        # A request made between two pages sorts before the cursor: the next page neither repeats nor skips.
        clock.advance(timedelta(minutes=30))
        assert (
            await c.post("/v1/deletions", json={"request_id": "r-d"}, headers=auth(mine["admin"]))
        ).status_code == 202
        second = await c.get("/v1/deletions", params={"limit": 3, "cursor": cursor}, headers=auth(mine["read"]))
        assert [r["request_id"] for r in second.json()["deletions"]] == ["r-a"]
        assert second.json()["next_cursor"] is None
        # A cursor is a position in time, not a way into another list: used by another workspace, it pages
        # that workspace's own requests (t-1 is newer than the position, so none).
        crossed = await c.get("/v1/deletions", params={"cursor": cursor}, headers=auth(theirs["admin"]))
        assert crossed.status_code == 200 and crossed.json()["deletions"] == []

        only = await c.get("/v1/deletions", params={"state": "failed"}, headers=auth(mine["admin"]))
        assert only.status_code == 200 and only.json()["deletions"] == []
        bad = await c.get("/v1/deletions", params={"cursor": "not-a-cursor"}, headers=auth(mine["admin"]))
        assert bad.status_code == 422 and "cursor" in bad.text, bad.text
        assert (await c.get("/v1/deletions", params={"limit": 0}, headers=auth(mine["admin"]))).status_code == 422
        assert (await c.get("/v1/deletions")).status_code == 401
        assert (await c.get("/v1/deletions", headers=auth(mine["ingest"]))).status_code == 403


async def test_a_finished_request_is_listed_with_its_completion_time(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    async with product(iso) as p:
        made = await p.client.post("/v1/deletions", json={"customer_id": "cust-3"}, headers=auth(ws["admin"]))
        assert made.status_code == 202, made.text
        done = await p.settled(ws["workspace_id"], made.json()["request_id"], timeout=120)
        assert done.state == "verified" and done.receipt is not None
        listed = await p.client.get("/v1/deletions", params={"state": "verified"}, headers=auth(ws["read"]))
        [row] = listed.json()["deletions"]
        assert row["request_id"] == done.request_id and row["has_receipt"] is True
        assert row["completed_at"] == done.receipt.completed_at.isoformat().replace("+00:00", "Z")


async def test_the_retention_policy_shows_the_installations_figures_and_the_workspaces_schedule(
    iso: Isolation,
) -> None:
    leaving, staying = await create_workspace(iso, "leaving"), await create_workspace(iso, "staying")
    async with product(
        iso, owners=False, retention_months=7, cancellation_grace_days=45, erasure_owners="ingest,rollup,people"
    ) as p:
        c = p.client
        before = await c.get("/v1/retention", headers=auth(leaving["read"]))
        assert before.status_code == 200, before.text
        assert before.json() == {
            "workspace_id": leaving["workspace_id"],
            "usage_retention_months": 7,
            "cancellation_grace_days": 45,
            "erasure_owners": ["ingest", "rollup", "people"],
            "scheduled_erasure": None,
        }
        # Cancelled three days ago: well inside the 45 days of grace whatever the date of the run.
        at = (datetime.now(UTC) - timedelta(days=3)).replace(second=0, microsecond=0)
        cancelled = LifecycleEvent(workspace_id=leaving["workspace_id"], kind="cancelled", at=at)
        await publish(iso, LIFECYCLE, cancelled.workspace_id, cancelled.model_dump_json().encode())

        async def scheduled() -> dict[str, object] | None:
            body = (await c.get("/v1/retention", headers=auth(leaving["read"]))).json()
            return body if body["scheduled_erasure"] else None

        schedule = (await eventually(scheduled, timeout=30))["scheduled_erasure"]
        assert schedule == {
            "cause": "cancelled",
            "since": f"{at:%Y-%m-%dT%H:%M:%SZ}",
            "erasure_due_at": f"{at + timedelta(days=45):%Y-%m-%dT%H:%M:%SZ}",
            "request_id": lifecycle_request_id(cancelled),
        }
        # Another workspace's schedule is never shown to this one.
        other = await c.get("/v1/retention", headers=auth(staying["admin"]))
        assert other.json()["scheduled_erasure"] is None and leaving["workspace_id"] not in other.text

        back = LifecycleEvent(workspace_id=leaving["workspace_id"], kind="reactivated", at=at + timedelta(days=3))
        await publish(iso, LIFECYCLE, back.workspace_id, back.model_dump_json().encode())

        async def cleared() -> bool:
            body = (await c.get("/v1/retention", headers=auth(leaving["read"]))).json()
            return body["scheduled_erasure"] is None

        await eventually(cleared, timeout=30)
        assert (await c.get("/v1/retention")).status_code == 401
        assert (await c.get("/v1/retention", headers=auth(leaving["ingest"]))).status_code == 403
        # Both reads name their permission in the OpenAPI document.
        paths = (await c.get("/openapi.json")).json()["paths"]
        assert paths["/v1/retention"]["get"]["x-permission"] == "deletions.read"
        assert paths["/v1/deletions"]["get"]["x-permission"] == "deletions.read"
