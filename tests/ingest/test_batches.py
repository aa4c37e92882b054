"""Durability of accepting a batch: 202 only after Kafka's ack; with the broker down, 503 and nothing counted;
after it is back, resending the same batch stores every event exactly once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import redis.asyncio as aioredis

from spendstream.common.kafka import make_broker, provision_topics
from spendstream.common.settings import BaseServiceSettings
from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.limits import month_key
from spendstream.ingest.settings import IngestSettings
from spendstream.ingest.workspaces import ControlPlane
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.settings import RollupSettings
from tests.support import Isolation, PrivateKafka, auth, eventually, serving, usage_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_broker_down_gives_503_counts_nothing_and_a_resend_after_restart_stores_each_event_once(
        iso: Isolation, private_kafka: PrivateKafka) -> None:
    base = iso.settings(BaseServiceSettings, kafka_bootstrap_servers=private_kafka.bootstrap)
    await provision_topics(base)
    broker = make_broker(base, "tests")
    await broker.connect()
    try:
        workspace, keys = await ControlPlane(base, broker).create_workspace("durable", "team")
    finally:
        await broker.stop()
    key = {k.scope: k.key for k in keys}
    ws_id = workspace.workspace_id
    batch = {"events": [usage_event(cost_usd=1.25), usage_event(cost_usd=2.5)]}
    ingest = create_ingest(iso.settings(IngestSettings, kafka_bootstrap_servers=private_kafka.bootstrap,
                                        publish_timeout_seconds=3))
    rollup = create_rollup(iso.settings(RollupSettings, kafka_bootstrap_servers=private_kafka.bootstrap))
    redis = aioredis.Redis.from_url(iso.stack.redis)
    try:
        async with serving([ingest, rollup]) as client:
            private_kafka.stop()
            down = await client.post("/v1/events", json=batch, headers=auth(key["ingest"]))
            assert (down.status_code, down.json()["error"]) == (503, "unavailable")
            assert down.headers["Retry-After"]
            # Nothing counted: no quota used, no event_id remembered (the retry must not be a "duplicate").
            quota = f"{iso.prefix}ingest:quota:{{{ws_id}}}:{month_key(datetime.now(UTC))}"
            assert int(await redis.get(quota) or 0) == 0
            assert await redis.exists(f"{iso.prefix}ingest:seen:{{{ws_id}}}:{batch['events'][0]['event_id']}") == 0

            private_kafka.start()

            async def resent() -> dict[str, Any] | None:
                r = await client.post("/v1/events", json=batch, headers=auth(key["ingest"]))
                return dict(r.json()) if r.status_code == 202 else None

            first = await eventually(resent, timeout=60, interval=1)
            assert first["accepted"] + first["duplicates"] == 2
            again = await client.post("/v1/events", json=batch, headers=auth(key["ingest"]))
            assert again.json() == {"accepted": 0, "duplicates": 2, "rejected": []}
            assert int(await redis.get(quota) or 0) == first["accepted"]

            async def stored() -> dict[str, Any] | None:
                r = await client.get("/v1/usage", headers=auth(key["read"]))
                totals: dict[str, Any] = r.json()["totals"]
                return totals if totals["requests"] >= 2 else None

            totals = await eventually(stored, timeout=60, interval=0.5)
    finally:
        await redis.aclose()
    # The failed publish may still have reached the broker late; rollup's (workspace, event_id) dedupe makes
    # that copy and the resent one a single stored event each.
    assert (totals["requests"], totals["cost_usd"]) == (2, "3.750000000")
