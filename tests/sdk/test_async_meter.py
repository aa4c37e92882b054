"""`AsyncMeter` through a real spendstream: tracked on an event loop, sent by a task, stored exactly."""

from __future__ import annotations

import asyncio

from spendstream_sdk import AsyncMeter, tags
from tests.sdk.conftest import Workspace


async def test_events_tracked_from_many_tasks_are_stored_exactly(workspace: Workspace) -> None:
    async with AsyncMeter(url=workspace.url, api_key=workspace.ingest_key, flush_interval=0.05) as meter:

        async def calls(customer: int) -> None:
            with tags(customer_id=f"cust-{customer}"):
                for i in range(50):
                    meter.track(
                        provider="anthropic",
                        model="claude-haiku-4-5",
                        input_tokens=100 + i,
                        output_tokens=10,
                        latency_ms=250,
                        cached_input_tokens=40,
                    )
                    await asyncio.sleep(0)

        await asyncio.gather(*(calls(c) for c in range(8)))
        assert await meter.aflush(timeout=30)
        assert meter.stats.sent == 400
    assert meter.stats.queued == 0

    body = await asyncio.to_thread(
        workspace.usage_when, lambda b: b["totals"]["requests"] == 400, 30.0, group_by="customer_id"
    )
    assert body["totals"]["input_tokens"] == 8 * sum(range(100, 150))
    assert body["totals"]["cached_input_tokens"] == 400 * 40
    assert sorted(row["customer_id"] for row in body["rows"]) == sorted(f"cust-{c}" for c in range(8))


async def test_aclose_sends_what_is_queued_and_stops(workspace: Workspace) -> None:
    meter = AsyncMeter(url=workspace.url, api_key=workspace.ingest_key, flush_interval=60)
    for _ in range(7):
        meter.track(provider="openai", model="gpt-4o", input_tokens=3, output_tokens=2, latency_ms=1)
    assert await meter.aclose(timeout=30)
    assert (meter.stats.sent, meter.stats.queued) == (7, 0)
    body = await asyncio.to_thread(workspace.usage_when, lambda b: b["totals"]["requests"] == 7)
    assert body["totals"]["input_tokens"] == 21
