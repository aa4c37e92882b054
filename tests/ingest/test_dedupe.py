"""Idempotency keys (spendstream.ingest.dedupe): seen only once marked, kept for the window, per workspace,
and a Redis outage degrades to "nothing seen" (rollup's dedupe then absorbs repeats) instead of failing."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis

from spendstream.ingest.dedupe import Deduplicator
from tests.support import Isolation, free_port

pytestmark = pytest.mark.integration

HOUR = 3600


def _bucket_start() -> float:
    """The start of the current 15-minute bucket: fake times near the real one keep the sets' real TTLs short."""
    return time.time() // 900 * 900


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_ids_are_seen_only_after_marking_and_per_workspace(iso: Isolation) -> None:
    redis = aioredis.Redis.from_url(iso.stack.redis)
    dedupe = Deduplicator(redis, iso.prefix, HOUR)
    try:
        assert await dedupe.seen("ws_a", ["e1", "e2"]) == set()
        await dedupe.mark("ws_a", ["e1"])
        assert await dedupe.seen("ws_a", ["e1", "e2"]) == {"e1"}
        assert await dedupe.seen("ws_b", ["e1"]) == set()
    finally:
        await redis.aclose()


@pytest.mark.parametrize("marked_at", [0.0, 899.0, 900.0, 1799.5])  # a bucket is 15 minutes of a 1 h window
async def test_a_repeat_anywhere_inside_the_window_is_seen_and_an_id_is_forgotten_within_a_quarter_window_after(
    iso: Isolation, marked_at: float
) -> None:
    redis = aioredis.Redis.from_url(iso.stack.redis)
    clock = Clock(_bucket_start() + marked_at)
    dedupe = Deduplicator(redis, iso.prefix, HOUR, clock=clock)
    try:
        await dedupe.mark("ws_a", ["e1"])
        marked = clock.now
        # Redis drops the whole set by itself once no check can look at it any more.
        expires_at = await redis.expiretime(dedupe.bucket_keys("ws_a")[-1])
        assert marked + HOUR < expires_at <= marked + HOUR * 1.25
        for later in (1.0, HOUR / 2, HOUR - 1, HOUR):
            clock.now = marked + later
            assert await dedupe.seen("ws_a", ["e1"]) == {"e1"}, later
        clock.now = marked + HOUR * 1.25 + 1
        assert await dedupe.seen("ws_a", ["e1"]) == set()
    finally:
        await redis.aclose()


async def test_unreachable_redis_means_nothing_seen_and_marking_does_not_raise() -> None:
    redis = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    dedupe = Deduplicator(redis, "x:", HOUR)
    try:
        assert await dedupe.seen("ws_a", ["e1"]) == set()
        await dedupe.mark("ws_a", ["e1"])
    finally:
        await redis.aclose()


async def test_a_workspace_holds_one_set_per_bucket_in_its_own_slot_however_many_ids_it_marks(iso: Isolation) -> None:
    redis = aioredis.Redis.from_url(iso.stack.redis)
    clock = Clock(_bucket_start())
    dedupe = Deduplicator(redis, iso.prefix, HOUR, clock=clock)
    ids = [f"e{i}" for i in range(2500)]  # more than the scripts pass to one SADD or SMISMEMBER
    try:
        await dedupe.mark("ws_a", ids[:1000:2])
        clock.now += 900
        await dedupe.mark("ws_a", ids[1000::2])
        assert await dedupe.seen("ws_a", ids) == set(ids[::2])
        assert await dedupe.seen("ws_a", ids[1::2]) == set()
        keys = {k.decode() async for k in redis.scan_iter(match=f"{iso.prefix}ingest:seen:*", count=1000)}
        assert keys == set(dedupe.bucket_keys("ws_a")[-2:])
        assert all(key.startswith(f"{iso.prefix}ingest:seen:{{ws_a}}:") for key in keys)
    finally:
        await redis.aclose()


async def test_any_id_travels_intact_in_the_one_argument_the_scripts_read(iso: Isolation) -> None:
    redis = aioredis.Redis.from_url(iso.stack.redis)
    dedupe = Deduplicator(redis, iso.prefix, HOUR)
    # What ingest allows, what the server makes, and what a separator-joined argument could not carry.
    ids = ["raw-0-1-2", "0193a1b2-7c3d-7e4f-8a9b-0c1d2e3f4a5b", "x_y", "a b", "", "é\n'\"", "9" * 64]
    try:
        await dedupe.mark("ws_a", ids[::2])
        assert await dedupe.seen("ws_a", ids) == set(ids[::2])
    finally:
        await redis.aclose()
