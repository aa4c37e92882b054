"""Per-workspace limits: token bucket and monthly quota answer 429 with Retry-After; a Redis outage loses
nothing (the limiter fails open and Kafka still decides)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from spendstream.common.kafka import make_broker
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import USAGE_EVENTS, topic_name
from spendstream.ingest.app import create_service
from spendstream.ingest.limits import month_key
from spendstream.ingest.settings import IngestSettings
from spendstream.ingest.workspaces import ControlPlane, WorkspaceDirectory
from tests.ingest.topics import read_all
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = pytest.mark.integration


async def _set_quota(iso: Isolation, workspace_id: str, quota: int) -> None:
    settings = iso.settings(BaseServiceSettings)
    directory = WorkspaceDirectory(settings)
    await directory.table.start()
    record = directory.get(workspace_id)
    await directory.table.stop()
    assert record is not None
    broker = make_broker(settings, "tests")
    await broker.connect()
    try:
        await ControlPlane(settings, broker).put_workspace(record.model_copy(update={"monthly_event_quota": quota}))
    finally:
        await broker.stop()


async def test_monthly_quota_answers_429_with_retry_after_and_counts_only_accepted_events(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    await _set_quota(iso, ws["workspace_id"], 3)
    async with serving([create_service(iso.settings(IngestSettings))]) as client:
        first = await client.post(
            "/v1/events", json={"events": [usage_event(), usage_event()]}, headers=auth(ws["ingest"])
        )
        assert first.status_code == 202
        over = await client.post(
            "/v1/events", json={"events": [usage_event(), usage_event()]}, headers=auth(ws["ingest"])
        )
        assert (over.status_code, over.json()["error"]) == (429, "quota_exceeded")
        assert int(over.headers["Retry-After"]) >= 1
        last = await client.post("/v1/events", json={"events": [usage_event()]}, headers=auth(ws["ingest"]))
        assert last.status_code == 202
    redis = aioredis.Redis.from_url(iso.stack.redis)
    key = f"{iso.prefix}ingest:quota:{{{ws['workspace_id']}}}:{month_key(datetime.now(UTC))}"
    try:
        assert int(await redis.get(key) or 0) == 3
        # Kept past the month: about three months (PRODUCT: rolling 3 months of monthly counters).
        assert await redis.ttl(key) > 85 * 24 * 3600
    finally:
        await redis.aclose()


async def test_token_bucket_answers_429_with_retry_after_once_the_burst_is_spent(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    settings = iso.settings(IngestSettings, rate_limit_events_per_second=0.01, rate_limit_burst_events=500)
    async with serving([create_service(settings)]) as client:
        burst = await client.post(
            "/v1/events", json={"events": [usage_event() for _ in range(500)]}, headers=auth(ws["ingest"])
        )
        assert burst.status_code == 202 and burst.json()["accepted"] == 500
        limited = await client.post("/v1/events", json={"events": [usage_event()]}, headers=auth(ws["ingest"]))
        assert (limited.status_code, limited.json()["error"]) == (429, "rate_limited")
        assert int(limited.headers["Retry-After"]) >= 1
        # Another workspace has its own bucket.
        other = await create_workspace(iso, "other")

        async def accepted() -> bool:  # 401 only while the serving ingest replays the new key
            ok = await client.post("/v1/events", json={"events": [usage_event()]}, headers=auth(other["ingest"]))
            assert ok.status_code in (202, 401), ok.text
            return ok.status_code == 202

        await eventually(accepted)


async def test_redis_outage_fails_open_and_every_accepted_event_reaches_kafka(
    iso: Isolation, own_redis: tuple[str, subprocess.Popen[bytes]]
) -> None:
    url, proc = own_redis
    ws = await create_workspace(iso)
    async with serving([create_service(iso.settings(IngestSettings, redis_url=url))]) as client:
        before = await client.post("/v1/events", json={"events": [usage_event()]}, headers=auth(ws["ingest"]))
        assert before.status_code == 202
        proc.kill()
        proc.wait()
        during = await client.post(
            "/v1/events", json={"events": [usage_event(), usage_event()]}, headers=auth(ws["ingest"])
        )
        assert during.status_code == 202 and during.json()["accepted"] == 2
        metrics = (await client.get("/metrics")).text
    assert 'spendstream_ingest_limiter_unavailable_total{limit="rate"}' in metrics
    records = await read_all(iso.stack.kafka, topic_name(USAGE_EVENTS, iso.prefix))
    assert sorted(int(r.value.split(b'"event_count":')[1].split(b",")[0]) for r in records) == [1, 2]
