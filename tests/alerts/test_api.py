"""/v1/budgets over the real alerts service: admin keys only, secrets shown once, changes and deletes."""

from __future__ import annotations

import pytest

from spendstream.alerts.app import create_service as create_alerts
from spendstream.common.topics import BUDGETS, topic_name
from tests.alerts.conftest import SECRET, alerts_settings
from tests.support import Isolation, auth, create_workspace, eventually, member_key, serving

pytestmark = pytest.mark.integration


async def test_budget_crud_shows_a_generated_secret_once_and_never_again(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    other = await create_workspace(iso, name="other")
    async with serving([create_alerts(alerts_settings(iso))]) as client:
        admin = auth(ws["admin"])
        body = {
            "name": "chat feature",
            "amount_usd": "250.50",
            "scope": {"tag": "feature", "value": "chat"},
            "webhooks": [{"url": "http://127.0.0.1:9/a"}, {"url": "http://127.0.0.1:9/b", "secret": SECRET}],
            "emails": ["ops@example.com"],
        }
        created = await client.post("/v1/budgets", json=body, headers=admin)
        assert created.status_code == 201, created.text
        budget = created.json()
        assert budget["thresholds"] == [75, 90, 100] and budget["amount_usd"] == "250.50"
        generated, given = (w["secret"] for w in budget["webhooks"])
        assert len(generated) >= 32 and given == SECRET

        shown = (await client.get(f"/v1/budgets/{budget['budget_id']}", headers=admin)).json()
        listed = (await client.get("/v1/budgets", headers=admin)).json()
        assert [w["secret"] for w in shown["webhooks"]] == [None, None]
        assert [b["budget_id"] for b in listed] == [budget["budget_id"]]
        assert generated not in str(listed) and SECRET not in str(listed)

        changed = await client.patch(
            f"/v1/budgets/{budget['budget_id']}",
            headers=admin,
            json={"thresholds": [50, 100, 80], "webhooks": [{"url": "http://127.0.0.1:9/a"}]},
        )
        assert changed.json()["thresholds"] == [50, 80, 100]
        assert changed.json()["webhooks"] == [
            {"webhook_id": budget["webhooks"][0]["webhook_id"], "url": "http://127.0.0.1:9/a", "secret": None}
        ]
        assert changed.json()["revision"] == 2

        # Another workspace's admin key sees nothing of it; a read key reads budgets (budgets.read) and changes
        # none (budgets.write), an ingest key does neither.
        foreign = await client.get(f"/v1/budgets/{budget['budget_id']}", headers=auth(other["admin"]))
        assert foreign.status_code == 404
        assert (await client.get("/v1/budgets", headers=auth(ws["read"]))).status_code == 200
        assert (await client.get("/v1/budgets", headers=auth(ws["ingest"]))).status_code == 403
        read_delete = await client.delete(f"/v1/budgets/{budget['budget_id']}", headers=auth(ws["read"]))
        assert read_delete.status_code == 403
        assert (await client.get("/v1/budgets", headers=auth("ssk_admin_nope"))).status_code == 401

        assert (await client.delete(f"/v1/budgets/{budget['budget_id']}", headers=admin)).status_code == 204
        assert (await client.get("/v1/budgets", headers=admin)).json() == []


async def test_secrets_on_the_budget_topic_are_sealed(iso: Isolation) -> None:
    from aiokafka import AIOKafkaConsumer

    ws = await create_workspace(iso)
    async with serving([create_alerts(alerts_settings(iso))]) as client:
        r = await client.post(
            "/v1/budgets",
            headers=auth(ws["admin"]),
            json={"name": "b", "amount_usd": "10", "webhooks": [{"url": "http://127.0.0.1:9/", "secret": SECRET}]},
        )
        assert r.status_code == 201
    consumer = AIOKafkaConsumer(
        topic_name(BUDGETS, iso.prefix), bootstrap_servers=iso.stack.kafka, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    values: list[bytes] = []
    try:

        async def read() -> bool:
            batches = await consumer.getmany(timeout_ms=500)
            values.extend(rec.value for recs in batches.values() for rec in recs)
            return bool(values)

        await eventually(read, timeout=60)
    finally:
        await consumer.stop()
    assert len(values) == 1
    assert SECRET.encode() not in values[0] and b"sealed_secret" in values[0]


async def test_invalid_budgets_are_refused_without_echoing_input(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    async with serving([create_alerts(alerts_settings(iso))]) as client:
        for body in (
            {"name": "x", "amount_usd": "-1"},
            {"name": "x", "amount_usd": "1", "thresholds": []},
            {"name": "x", "amount_usd": "1", "scope": {"tag": "model", "value": "gpt"}},
            {"name": "x", "amount_usd": "1", "emails": ["not an address"]},
            {"name": "x", "amount_usd": "1", "prompt": "secret text"},
        ):
            r = await client.post("/v1/budgets", json=body, headers=auth(ws["admin"]))
            assert r.status_code == 422, body
            assert "secret text" not in r.text and "not an address" not in r.text


async def test_a_budget_with_webhooks_needs_webhooks_write_beside_budgets_write(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    _, members = await member_key(iso, ws["workspace_id"], "member")
    _, admins = await member_key(iso, ws["workspace_id"], "admin")
    hooked = {"name": "hooked", "amount_usd": "10", "webhooks": [{"url": "http://127.0.0.1:9/a"}]}
    async with serving([create_alerts(alerts_settings(iso))]) as client:
        refused = await client.post("/v1/budgets", json=hooked, headers=auth(members))
        assert refused.status_code == 403
        assert "webhooks.write" in refused.json()["message"]
        assert (await client.get("/v1/budgets", headers=auth(members))).json() == []
        plain = await client.post("/v1/budgets", json={"name": "plain", "amount_usd": "10"}, headers=auth(members))
        assert plain.status_code == 201, plain.text
        path = f"/v1/budgets/{plain.json()['budget_id']}"
        change = {"webhooks": [{"url": "http://127.0.0.1:9/b"}]}
        assert (await client.patch(path, json=change, headers=auth(members))).status_code == 403
        assert (await client.patch(path, json={"amount_usd": "20"}, headers=auth(members))).status_code == 200
        assert (await client.patch(path, json=change, headers=auth(admins))).status_code == 200
        assert (await client.post("/v1/budgets", json=hooked, headers=auth(admins))).status_code == 201
