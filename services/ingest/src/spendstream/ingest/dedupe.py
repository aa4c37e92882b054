"""Idempotency: an event_id seen inside the window is a duplicate, not a second event.

Ids are *checked* before publishing and *marked* only after Kafka acknowledged the batch, so a failed publish
never swallows the client's retry (openmeter #5118 claimed the key first and lost retried events).
Redis is an optimisation here, not the guarantee: if it is down, events pass as new and rollup's
ClickHouse-side dedupe still stores each (workspace, event_id) once.

Layout: a workspace's ids live in Redis sets, one per time bucket of a quarter of the window
(`<prefix>ingest:seen:{<workspace>}:<bucket number>`, 12 h for the default 48 h). An id is marked in the bucket of
the moment it is marked; a check looks in the current bucket and the four before it, so any repeat inside the
window is found, and one up to a quarter-window older may be too (48 to 60 h by default: stricter, never
looser). Each set expires as a whole once no check can look at it again.

Why sets and not a key per id with its own TTL (what this was first): per-id `SET … EX` and `EXISTS` from Lua
cost Redis 2.5 ms of CPU per 500-event batch, which at 100k events/s is half of one of the machine's two cores,
and 120 B per id; `SADD` and `SMISMEMBER` over the same ids cost a fraction (docs/benchmarks.md). A workspace
also has a handful of keys instead of millions, so an erasure's SCAN no longer walks every id ever seen.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from spendstream.common.redis_keys import tenant_key

log = logging.getLogger(__name__)

BUCKETS_PER_WINDOW = 4
_ENCODE = msgspec.msgpack.encode

# The ids travel as one argument, a MessagePack array that the scripts read with Redis' own cmsgpack (C): 500 ids
# as 500 arguments cost redis-py ~11 % of ingest's CPU to pack (bench profile, 1 December), and splitting one
# space-joined string in Lua cost Redis twice what cmsgpack.unpack does (0.20 against 0.11 ms per 500 ids).
# Every key is declared, and all share the workspace's hash tag, so a script runs on one Redis Cluster slot.
# SMISMEMBER and SADD take the ids in slices: Lua's unpack() is bounded by its C stack (8,000 values).
_IDS = """
local ids = cmsgpack.unpack(ARGV[1])
local function sliced(command, key)
  local out = {}
  for first = 1, #ids, 1000 do
    local reply = redis.call(command, key, unpack(ids, first, math.min(first + 999, #ids)))
    if type(reply) == 'table' then for _, v in ipairs(reply) do out[#out + 1] = v end end
  end
  return out
end
"""

# KEYS: the buckets the window covers. Answers the (1-based) positions of ids found in any: usually none.
_SEEN = (
    _IDS
    + """
local found, hit = {}, {}
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    for i, member in ipairs(sliced('SMISMEMBER', key)) do
      if member == 1 and not hit[i] then hit[i] = true; found[#found + 1] = i end
    end
  end
end
return found
"""
)

# KEYS[1]: the current bucket; ARGV[2]: the unix time after which no check looks at it.
_MARK = (
    _IDS
    + """
sliced('SADD', KEYS[1])
redis.call('EXPIREAT', KEYS[1], ARGV[2])
return #ids
"""
)


class Deduplicator:
    def __init__(
        self, redis: aioredis.Redis, prefix: str, window_seconds: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        # Buckets of whole seconds; the five checked always span at least the window.
        self._bucket = max(1, math.ceil(window_seconds / BUCKETS_PER_WINDOW))
        self._clock = clock
        self._seen_script = redis.register_script(_SEEN)
        self._mark_script = redis.register_script(_MARK)

    def _current(self) -> int:
        return int(self._clock() // self._bucket)

    def _key(self, workspace_id: str, bucket: int) -> str:
        return tenant_key(self._prefix, "ingest", "seen", workspace_id, str(bucket))

    def bucket_keys(self, workspace_id: str) -> list[str]:
        """The sets a check looks in now, oldest first; the last is the one a mark adds to."""
        current = self._current()
        return [self._key(workspace_id, n) for n in range(current - BUCKETS_PER_WINDOW, current + 1)]

    async def seen(self, workspace_id: str, event_ids: list[str]) -> set[str]:
        """The ids already marked; empty when Redis cannot answer (downstream dedupe takes over)."""
        if not event_ids:
            return set()
        try:
            found = await self._seen_script(keys=self.bucket_keys(workspace_id), args=[_ENCODE(event_ids)])
        except (RedisError, OSError):
            log.warning("dedupe check skipped: redis unavailable")
            return set()
        return {event_ids[int(i) - 1] for i in found}

    async def mark(self, workspace_id: str, event_ids: list[str]) -> None:
        """Mark ids as seen for the window; called only after the broker acknowledged them."""
        if not event_ids:
            return
        current = self._current()
        # The last check that looks at this bucket runs while bucket current+4 is the current one.
        expires_at = (current + BUCKETS_PER_WINDOW + 1) * self._bucket
        try:
            await self._mark_script(keys=[self._key(workspace_id, current)], args=[_ENCODE(event_ids), expires_at])
        except (RedisError, OSError):
            log.warning("dedupe mark skipped: redis unavailable")
