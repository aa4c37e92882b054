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
A record whose events carry a `reservation_id` also settles those reservations of hard budgets
(reservations.py) in the same script: each is removed from the open reservations of every budget it held, its
amount taken off their totals, atomically with the actual cost joining committed spend, so committed + reserved
never counts a call twice nor drops it, at any instant. A redelivered record settles nothing (its offset is at
or below the mark); a reservation already settled, released or expired is not in the set, so the same id in a
second record frees nothing twice (that record's cost is counted again, as any event in two records is).
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

from spendstream.alerts import metrics
from spendstream.alerts.keyspace import ALL, KeySpace
from spendstream.alerts.periods import month_end, month_id, to_nanos
from spendstream.alerts.reservations import StoredReservation, member, parse_stored
from spendstream.common.events import SealedEvent
from spendstream.common.pricebook import PriceBook
from spendstream.common.prices import PriceTable

# Month counters stay a month past their period (reconciliation, late events); day counters cover the spike
# window (7 trailing days plus today) with a day to spare.
MONTH_KEEP = timedelta(days=35)
DAY_KEEP = timedelta(days=9)

# KEYS: the mark, n counters, then (open reservations, their total) per settled reservation and budget.
# ARGV: offset, mark TTL, n, (amount, expire-at) per counter, then (member, nanos) per settlement.
# Returns {1, settled} when the record was counted, {0, 0} when its offset was already.
_COUNT = """
local done = tonumber(redis.call('GET', KEYS[1]) or '-1')
if tonumber(ARGV[1]) <= done then return {0, 0} end
local n = tonumber(ARGV[3])
for i = 1, n do
  redis.call('INCRBY', KEYS[i + 1], ARGV[2 * i + 2])
  redis.call('EXPIREAT', KEYS[i + 1], ARGV[2 * i + 3])
end
local settled = 0
local j = 1
while n + 2 * j <= #KEYS do
  if redis.call('ZREM', KEYS[n + 2 * j], ARGV[2 * n + 2 * j + 2]) == 1 then
    redis.call('DECRBY', KEYS[n + 2 * j + 1], ARGV[2 * n + 2 * j + 3])
    settled = settled + 1
  end
  j = j + 1
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return {1, settled}
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
class Release:
    """One reservation taken off one hard budget's open reservations (see reservations.py)."""

    open: str
    total: str
    member: str
    nanos: int


@dataclass(frozen=True, slots=True)
class Increments:
    """What one record adds, unless its offset is at or below `mark` (the highest offset already counted)."""

    mark: str
    offset: int
    mark_ttl_seconds: int
    # counter key -> (nanos to add, expire-at unix time)
    counters: Mapping[str, tuple[int, int]]
    # reservations the record's events settle, in the same step
    releases: Sequence[Release] = ()


class SpendStore(Protocol):
    """The counters and marks; each call is atomic per record, as one Lua script run is on one Redis slot."""

    async def add_once(self, increments: Sequence[Increments]) -> tuple[int, int]:
        """In order, per record: if its offset is above its mark, add its counters, apply its releases and move
        the mark there. Returns how many records were added and how many releases removed a reservation."""
        ...

    async def stored_many(self, records: Sequence[str]) -> list[str | None]:
        """Reservation records (`<nanos>:<budget ids>`), None for one that is gone."""
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

    async def add_once(self, increments: Sequence[Increments]) -> tuple[int, int]:
        if not increments:
            return 0, 0
        # One round trip for the whole Kafka batch.
        async with self._redis.pipeline(transaction=False) as pipe:
            for one in increments:
                args: list[int | str] = [one.offset, one.mark_ttl_seconds, len(one.counters)]
                keys = [one.mark, *one.counters]
                for amount, expire_at in one.counters.values():
                    args += [amount, expire_at]
                for release in one.releases:
                    keys += [release.open, release.total]
                    args += [release.member, release.nanos]
                await self._count(keys=keys, args=args, client=pipe)
            results = await pipe.execute()
        return sum(int(r[0]) for r in results), sum(int(r[1]) for r in results)

    async def stored_many(self, records: Sequence[str]) -> list[str | None]:
        if not records:
            return []
        # GETs, not MGET: the records belong to several workspaces, hence several Redis Cluster slots.
        async with self._redis.pipeline(transaction=False) as pipe:
            for record in records:
                pipe.get(record)
            found = await pipe.execute()
        return [v.decode() if isinstance(v, bytes) else v for v in found]

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

    def _increments(
        self,
        record: CountedRecord,
        scopes: Iterable[tuple[str, str]],
        held: Mapping[tuple[str, str], StoredReservation],
    ) -> Increments:
        tracked = set(scopes)
        sums: dict[str, int] = defaultdict(int)
        expiry: dict[str, int] = {}
        ws = record.workspace_id
        releases: list[Release] = []
        for event in record.events:
            reservation_id = event.reservation_id
            found = held.get((ws, reservation_id)) if reservation_id is not None else None
            if reservation_id is not None and found is not None:
                releases += [
                    Release(
                        self._keys.open_reservations(ws, budget_id),
                        self._keys.reserved_total(ws, budget_id),
                        member(reservation_id, found.nanos),
                        found.nanos,
                    )
                    for budget_id in found.budget_ids
                ]
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
        counters = {k: (v, expiry[k]) for k, v in sums.items()}
        return Increments(mark, record.offset, self._offsets_ttl, counters, releases)

    async def count(self, records: Sequence[CountedRecord], scopes: Mapping[str, Set[tuple[str, str]]]) -> int:
        """Add each record not counted before, settling the reservations its events carry; `scopes` names the
        tag scopes budgeted per workspace.

        Returns how many records were new.
        """
        wanted = sorted(
            {(r.workspace_id, rid) for r in records for e in r.events if (rid := e.reservation_id) is not None}
        )
        # A reservation's record never changes once written, so reading it before the script is safe: if the
        # reservation expires or is released in between, the script's ZREM finds nothing and frees nothing.
        stored = await self._store.stored_many([self._keys.reservation(ws, rid) for ws, rid in wanted])
        held = {pair: parse_stored(value) for pair, value in zip(wanted, stored, strict=True) if value is not None}
        added, settled = await self._store.add_once(
            [self._increments(r, scopes.get(r.workspace_id, set()), held) for r in records]
        )
        metrics.RESERVATIONS_RELEASED.labels("settled").inc(settled)
        return added

    async def month_to_date(self, workspace_id: str, month: str, scope: str) -> int:
        [value] = await self._store.values([self._keys.month_spend(workspace_id, month, scope)])
        return value

    async def days(self, workspace_id: str, days: Sequence[date], scope: str) -> list[int]:
        return await self._store.values([self._keys.day_spend(workspace_id, d, scope) for d in days])

    async def raise_to(self, key: str, nanos: int, expire_at: int) -> bool:
        """Reconciliation: lift a counter to `nanos` if it is below (never lowers: rollup may lag behind)."""
        return await self._store.raise_to(key, nanos, expire_at)
