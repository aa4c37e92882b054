"""The deletion API: admin keys only, the workspace from the key, idempotent by request id."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import REGISTRY

from spendstream.common.service import build_http_app
from spendstream.retention.app import build
from spendstream.retention.settings import RetentionSettings
from tests.retention.conftest import product
from tests.support import Isolation, auth, create_workspace, member_key

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
