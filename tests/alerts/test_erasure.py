"""alerts as an erasure owner: budgets, counters, markers and delivery logs of a customer or a workspace go,
a report comes back with counts and verifications, and a repeated command is a no-op that reports again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer

from spendstream.alerts.app import create_service as create_alerts
from spendstream.common.erasure import DeletionCommand, DeletionReport, ErasureScope
from spendstream.common.kafka import make_broker
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import DELETION_COMMANDS, DELETION_REPORTS, topic_name
from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.settings import IngestSettings
from tests.alerts.conftest import alerts_settings, budget_body
from tests.alerts.receivers import WebhookReceiver
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = pytest.mark.integration


async def _command(iso: Isolation, scope: ErasureScope, request_id: str) -> None:
    broker = make_broker(iso.settings(BaseServiceSettings), "tests")
    await broker.connect()
    try:
        command = DeletionCommand(request_id=request_id, scope=scope, issued_at=datetime.now(UTC))
        await broker.publish(
            command.model_dump_json().encode(),
            topic_name(DELETION_COMMANDS, iso.prefix),
            key=scope.workspace_id.encode(),
        )
    finally:
        await broker.stop()


async def _reports(iso: Isolation, count: int) -> list[DeletionReport]:
    consumer = AIOKafkaConsumer(
        topic_name(DELETION_REPORTS, iso.prefix),
        bootstrap_servers=iso.stack.kafka,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    found: list[DeletionReport] = []
    try:

        async def enough() -> bool:
            batches = await consumer.getmany(timeout_ms=200)
            reports = [DeletionReport.model_validate_json(r.value) for rs in batches.values() for r in rs]
            found.extend(r for r in reports if r.owner == "alerts")
            return len(found) >= count

        await eventually(enough, timeout=60)
    finally:
        await consumer.stop()
    assert len(found) == count
    return found


async def _keys(redis: aioredis.Redis, iso: Isolation, workspace_id: str) -> list[bytes]:
    return [k async for k in redis.scan_iter(match=f"{iso.prefix}alerts:*{{{workspace_id}}}*", count=10_000)]


async def test_customer_then_workspace_erasure_deletes_budgets_and_redis_keys_and_reports(
    iso: Isolation, receiver: WebhookReceiver
) -> None:
    ws = await create_workspace(iso)
    wid = ws["workspace_id"]
    redis = aioredis.Redis.from_url(iso.stack.redis)
    async with serving([create_alerts(alerts_settings(iso))]) as client:
        admin = auth(ws["admin"])
        ids = {}
        for name, scope in (
            ("all", None),
            ("c1", {"tag": "customer_id", "value": "cust-1"}),
            ("c2", {"tag": "customer_id", "value": "cust-2"}),
        ):
            r = await client.post(
                "/v1/budgets",
                headers=admin,
                json=budget_body(receiver, emails=[], thresholds=[50], scope=scope, name=name),
            )
            ids[name] = r.json()["budget_id"]
        # ingest only while spending: it is an erasure owner too, and would revoke the admin key used below.
        async with serving([create_ingest(iso.settings(IngestSettings))]) as ingest:
            for customer in ("cust-1", "cust-2"):
                event = usage_event(cost_usd=60, tags={"customer_id": customer})
                assert (
                    await ingest.post("/v1/events", json={"events": [event]}, headers=auth(ws["ingest"]))
                ).status_code == 202
        await eventually(lambda: _true(len(receiver.accepted) == 3), timeout=60)
        keys_before = await _keys(redis, iso, wid)

        await _command(iso, ErasureScope(workspace_id=wid, customer_id="cust-1"), "req-customer")
        [customer_report] = await _reports(iso, 1)
        listed = (await client.get("/v1/budgets", headers=admin)).json()
        assert sorted(b["name"] for b in listed) == ["all", "c2"]
        assert customer_report.owner == "alerts" and customer_report.status == "done"
        counts = {c.store: (c.before, c.after) for c in customer_report.counts}
        assert counts["kafka:alerts.budgets.v1"] == (1, 0)
        redis_before, redis_after = counts["redis:alerts"]
        assert redis_before > 0 and redis_after == 0
        assert all(v.result == 0 for v in customer_report.verifications)
        assert "cust-1" not in customer_report.model_dump_json().replace('"customer_id":"cust-1"', "")
        assert len(await _keys(redis, iso, wid)) == len(keys_before) - redis_before

        await _command(iso, ErasureScope(workspace_id=wid), "req-ws")
        await _command(iso, ErasureScope(workspace_id=wid), "req-ws")  # a repeat
        _, first, repeat = await _reports(iso, 3)
        assert (await client.get("/v1/budgets", headers=admin)).json() == []
    assert await _keys(redis, iso, wid) == []
    await redis.aclose()
    assert {c.store: (c.before, c.after) for c in first.counts}["kafka:alerts.budgets.v1"] == (2, 0)
    assert [(c.before, c.after) for c in repeat.counts] == [(0, 0), (0, 0)]
    assert first.status == repeat.status == "done" and repeat.request_id == "req-ws"


async def _true(value: bool) -> bool:
    return value
