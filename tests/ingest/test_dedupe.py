"""Idempotency keys (spendstream.ingest.dedupe): seen only once marked, kept for the window, per workspace,
and a Redis outage degrades to "nothing seen" (rollup's dedupe then absorbs repeats) instead of failing."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from spendstream.ingest.dedupe import Deduplicator
from tests.support import Isolation, free_port

pytestmark = pytest.mark.integration


async def test_ids_are_seen_only_after_marking_for_the_window_and_per_workspace(iso: Isolation) -> None:
    redis = aioredis.Redis.from_url(iso.stack.redis)
    dedupe = Deduplicator(redis, iso.prefix, 3600)
    try:
        assert await dedupe.seen("ws_a", ["e1", "e2"]) == set()
        await dedupe.mark("ws_a", ["e1"])
        assert await dedupe.seen("ws_a", ["e1", "e2"]) == {"e1"}
        assert await dedupe.seen("ws_b", ["e1"]) == set()
        ttl = await redis.ttl(f"{iso.prefix}ingest:seen:{{ws_a}}:e1")
        assert 3500 < ttl <= 3600
    finally:
        await redis.aclose()


async def test_unreachable_redis_means_nothing_seen_and_marking_does_not_raise() -> None:
    redis = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    dedupe = Deduplicator(redis, "x:", 3600)
    try:
        assert await dedupe.seen("ws_a", ["e1"]) == set()
        await dedupe.mark("ws_a", ["e1"])
    finally:
        await redis.aclose()


async def test_a_full_batch_is_checked_and_marked_in_one_call_each_with_every_key_in_its_workspace_slot(
        iso: Isolation) -> None:
    redis = aioredis.Redis.from_url(iso.stack.redis)
    dedupe = Deduplicator(redis, iso.prefix, 3600)
    ids = [f"e{i}" for i in range(500)]
    try:
        await dedupe.mark("ws_a", ids[::2])
        assert await dedupe.seen("ws_a", ids) == set(ids[::2])
        assert await dedupe.seen("ws_a", ids[1::2]) == set()
        keys = {k.decode() async for k in redis.scan_iter(match=f"{iso.prefix}ingest:seen:*", count=1000)}
        assert keys == {f"{iso.prefix}ingest:seen:{{ws_a}}:{e}" for e in ids[::2]}
        assert 3500 < await redis.ttl(f"{iso.prefix}ingest:seen:{{ws_a}}:e498") <= 3600
    finally:
        await redis.aclose()


async def test_ids_travel_as_one_argument_and_one_that_could_not_be_split_back_is_refused(iso: Isolation) -> None:
    redis = aioredis.Redis.from_url(iso.stack.redis)
    dedupe = Deduplicator(redis, iso.prefix, 3600)
    try:
        await dedupe.mark("ws_a", ["raw-0-1-2", "0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b", "x_y"])
        assert await dedupe.seen("ws_a", ["x_y", "new", "raw-0-1-2"]) == {"x_y", "raw-0-1-2"}
        for bad in (["a b"], ["a", ""]):
            with pytest.raises(ValueError):
                await dedupe.seen("ws_a", bad)
    finally:
        await redis.aclose()
