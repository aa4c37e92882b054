"""Month-to-date (and per-day) spend in Redis, each Kafka record counted exactly once.

`usage.events.v1` is keyed by workspace, so a workspace's records are ordered on one partition. Per record,
one Lua script compares the record's offset with the highest offset already counted for (workspace,
partition) and, only if it is newer, adds the record's cost to the counters and moves that mark - all in one
atomic step on the workspace's Redis slot. Hence:
  * redelivery after a crash or rebalance, a replay of the whole topic, or two consumer groups reading the same
    records all count nothing twice: the offset is at or below the mark;
  * a crash between the script and the offset commit loses nothing: the counters and the mark moved together.
The mark outlives the topic's retention (7 days), so no record older than it can come back. Costs are integer
nano-dollars. Events without `cost_usd` are priced by the shared price book (pricebook.py: the dated table
versions and the workspace's rates), with the function rollup stores costs with; an unpriced model counts 0
here as it does in rollup.
SpendCounter decides what a record adds where; a SpendStore applies it atomically: RedisSpendStore with the
Lua scripts below, and the in-memory stand-in of the tests with the same semantics.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

import redis.asyncio as aioredis

from spendstream.alerts.keyspace import ALL, KeySpace
from spendstream.alerts.periods import month_end, month_id, to_nanos
from spendstream.common.events import SealedEvent
from spendstream.common.pricebook import PriceBook
from spendstream.common.prices import PriceTable

# Month counters stay a month past their period (reconciliation, late events); day counters cover the spike
# window (7 trailing days plus today) with a day to spare.
MONTH_KEEP = timedelta(days=35)
DAY_KEEP = timedelta(days=9)

_COUNT = """
local done = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) <= done then return 0 end
for i = 2, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[2 * i - 1])
  redis.call('EXPIREAT', KEYS[i], ARGV[2 * i])
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


_RAISE = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) <= cur then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EXAT', ARGV[2])
return 1
"""


@dataclass(frozen=True, slots=True)
class CountedRecord:
    """One decrypted Kafka record of one workspace."""

    workspace_id: str
    topic: str
    partition: int
    offset: int
    events: Sequence[SealedEvent]


def event_cost(workspace_id: str, event: SealedEvent, prices: PriceBook) -> int:
    """Cost in nano-dollars: reported, else computed by the price book, else 0 (unknown model)."""
    cost, _ = prices.cost(workspace_id, event)
    return to_nanos(cost) if cost is not None else 0


@dataclass(frozen=True, slots=True)
class Increments:
    """What one record adds, unless its offset is at or below `mark` (the highest offset already counted)."""

    mark: str
    offset: int
    mark_ttl_seconds: int
    # counter key -> (nanos to add, expire-at unix time)
    counters: Mapping[str, tuple[int, int]]


class SpendStore(Protocol):
    """The counters and marks; each call is atomic per record, as one Lua script run is on one Redis slot."""

    async def add_once(self, increments: Sequence[Increments]) -> int:
        """In order, per record: if its offset is above its mark, add its counters and move the mark there.
        Returns how many records were added."""
        ...

    async def values(self, keys: Sequence[str]) -> list[int]:
        """The counters' values, 0 for a missing (or expired) one."""
        ...

    async def raise_to(self, key: str, nanos: int, expire_at: int) -> bool:
        """Set the counter to `nanos` (expiring at `expire_at`) if it is below; True when it was raised."""
        ...


class RedisSpendStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._count = redis.register_script(_COUNT)
        self._raise = redis.register_script(_RAISE)

    async def add_once(self, increments: Sequence[Increments]) -> int:
        if not increments:
            return 0
        # One round trip for the whole Kafka batch.
        async with self._redis.pipeline(transaction=False) as pipe:
            for one in increments:
                args: list[int] = [one.offset, one.mark_ttl_seconds]
                for amount, expire_at in one.counters.values():
                    args += [amount, expire_at]
                await self._count(keys=[one.mark, *one.counters], args=args, client=pipe)
            results = await pipe.execute()
        return sum(int(r) for r in results)

    async def values(self, keys: Sequence[str]) -> list[int]:
        found = await self._redis.mget(list(keys))
        return [int(v or 0) for v in found]

    async def raise_to(self, key: str, nanos: int, expire_at: int) -> bool:
        return bool(await self._raise(keys=[key], args=[nanos, expire_at]))


class SpendCounter:
    def __init__(
        self, store: SpendStore, keys: KeySpace, prices: PriceBook | PriceTable, offsets_ttl_seconds: int
    ) -> None:
        self._store = store
        self._keys = keys
        self._prices = PriceBook.of(prices)
        self._offsets_ttl = offsets_ttl_seconds

    def _increments(self, record: CountedRecord, scopes: Iterable[tuple[str, str]]) -> Increments:
        tracked = set(scopes)
        sums: dict[str, int] = defaultdict(int)
        expiry: dict[str, int] = {}
        ws = record.workspace_id
        for event in record.events:
            cost = event_cost(ws, event, self._prices)
            if cost == 0:
                continue
            month = month_id(event.timestamp)
            day: date = event.timestamp.date()
            month_expiry = int((month_end(event.timestamp) + MONTH_KEEP).timestamp())
            day_expiry = int((datetime(day.year, day.month, day.day, tzinfo=UTC) + DAY_KEEP).timestamp())
            scopes_of_event = [ALL]
            for tag, value in event.tags.items():
                if (tag, value) in tracked:
                    scopes_of_event.append(self._keys.scope(ws, tag, value))
            for scope in scopes_of_event:
                for key, exp in (
                    (self._keys.month_spend(ws, month, scope), month_expiry),
                    (self._keys.day_spend(ws, day, scope), day_expiry),
                ):
                    sums[key] += cost
                    expiry[key] = exp
        mark = self._keys.counted_offset(ws, record.topic, record.partition)
        return Increments(mark, record.offset, self._offsets_ttl, {k: (v, expiry[k]) for k, v in sums.items()})

    async def count(self, records: Sequence[CountedRecord], scopes: Mapping[str, Set[tuple[str, str]]]) -> int:
        """Add each record not counted before; `scopes` names the tag scopes budgeted per workspace.

        Returns how many records were new.
        """
        return await self._store.add_once([self._increments(r, scopes.get(r.workspace_id, set())) for r in records])

    async def month_to_date(self, workspace_id: str, month: str, scope: str) -> int:
        [value] = await self._store.values([self._keys.month_spend(workspace_id, month, scope)])
        return value

    async def days(self, workspace_id: str, days: Sequence[date], scope: str) -> list[int]:
        return await self._store.values([self._keys.day_spend(workspace_id, d, scope) for d in days])

    async def raise_to(self, key: str, nanos: int, expire_at: int) -> bool:
        """Reconciliation: lift a counter to `nanos` if it is below (never lowers: rollup may lag behind)."""
        return await self._store.raise_to(key, nanos, expire_at)
