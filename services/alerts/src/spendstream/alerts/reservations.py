"""Hard budgets: reserve before a call, settle with its usage event, never let concurrent calls overspend.

Per hard budget, Redis holds its open reservations as a sorted set (member `<reservation id>:<nanos>`, score:
expiry in unix ms) and their total in a counter; committed spend is the month's spend counter of spend.py.
One Lua script, on the workspace's Redis slot (every key carries its hash tag), does a whole reservation:
  1. prunes, per covering budget, the reservations whose expiry has passed (by Redis' own clock, TIME), taking
     their amounts off the total: expiry is exact arithmetic on the set, never a key's TTL;
  2. checks committed + reserved + estimate <= amount for EVERY hard budget the call's tags fall under;
  3. only if all pass, adds the reservation to each, and records it (amount, budgets) under its id.
A check then a write in one script: two replicas or a thousand concurrent requests cannot both pass a check
that only one of them fits. Releasing (DELETE, or the settling event) removes the member with ZREM and
subtracts its amount only when ZREM removed it, so releasing twice, or after expiry, frees nothing twice.
Settlement happens inside spend.py's counting script, in the same atomic step that adds the event's actual
cost to committed spend, and is skipped with the count when the record's offset was already counted.
While Redis is unreachable each covering budget's `on_redis_unavailable` decides: any `deny` refuses the call
(503 `budget_state_unavailable`), all `allow` let it through unreserved, and the answer says so.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from spendstream.alerts import metrics
from spendstream.alerts.budgets import BudgetState
from spendstream.alerts.keyspace import KeySpace
from spendstream.alerts.periods import from_nanos, month_id, to_nanos
from spendstream.common.records import BudgetRecord

# Denials as structured audit lines (no tracker-wide audit log exists yet; these go to the JSON log).
audit = logging.getLogger("spendstream.audit")

# How long the bookkeeping keys outlive the last expiry they hold (the arithmetic never relies on it).
KEEP_MS = 60_000

# Prune one budget's expired reservations; `now` in unix ms. Members are `<id>:<nanos>`.
_PRUNE = """
local function prune(open, total, now)
  local gone = redis.call('ZRANGEBYSCORE', open, '-inf', now)
  if #gone == 0 then return end
  local freed = 0
  for _, m in ipairs(gone) do freed = freed + tonumber(string.match(m, ':(%d+)$')) end
  redis.call('ZREMRANGEBYSCORE', open, '-inf', now)
  redis.call('DECRBY', total, freed)
end
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function keep_until(key, at)
  local current = redis.call('PEXPIRETIME', key)
  if current >= 0 and current < at or current == -1 then redis.call('PEXPIREAT', key, at) end
end
"""

# KEYS: the reservation's record, then per budget: open set, total, committed spend of the month.
# ARGV: nanos, ttl ms, reservation id, keep ms, the budget ids joined by ",", then one cap (nanos) per budget.
# Returns {1, expiry ms, left_1, ...} (left after this reservation) or {0, index of the budget, left}.
_RESERVE = (
    _PRUNE
    + """
local now = clock()
local amount = tonumber(ARGV[1])
local n = (#KEYS - 1) / 3
local left = {}
for i = 1, n do
  prune(KEYS[3 * i - 1], KEYS[3 * i], now)
  local committed = tonumber(redis.call('GET', KEYS[3 * i + 1]) or '0')
  local reserved = tonumber(redis.call('GET', KEYS[3 * i]) or '0')
  left[i] = tonumber(ARGV[5 + i]) - committed - reserved
  if amount > left[i] then return {0, i, left[i]} end
end
local expiry = now + tonumber(ARGV[2])
local keep = expiry + tonumber(ARGV[4])
local member = ARGV[3] .. ':' .. ARGV[1]
local answer = {1, expiry}
for i = 1, n do
  redis.call('ZADD', KEYS[3 * i - 1], expiry, member)
  redis.call('INCRBY', KEYS[3 * i], amount)
  keep_until(KEYS[3 * i - 1], keep)
  keep_until(KEYS[3 * i], keep)
  answer[i + 2] = left[i] - amount
end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. ARGV[5], 'PXAT', keep)
return answer
"""
)

# KEYS: per budget: open set, total. ARGV: member, nanos. Returns 1 if anything was released.
_RELEASE = """
local released = 0
for i = 1, #KEYS, 2 do
  if redis.call('ZREM', KEYS[i], ARGV[1]) == 1 then
    redis.call('DECRBY', KEYS[i + 1], ARGV[2])
    released = 1
  end
end
return released
"""

# KEYS: per budget: open set, total, committed. Returns {committed_1, reserved_1, ...} after pruning.
_STATE = (
    _PRUNE
    + """
local now = clock()
local answer = {}
for i = 1, #KEYS / 3 do
  prune(KEYS[3 * i - 2], KEYS[3 * i - 1], now)
  answer[2 * i - 1] = tonumber(redis.call('GET', KEYS[3 * i]) or '0')
  answer[2 * i] = tonumber(redis.call('GET', KEYS[3 * i - 1]) or '0')
end
return answer
"""
)


@dataclass(frozen=True, slots=True)
class Ledger:
    """The keys of one hard budget's live state, and its amount in nanos."""

    budget_id: str
    open: str
    total: str
    committed: str
    cap: int


@dataclass(frozen=True, slots=True)
class Held:
    """A reservation held: its expiry (unix ms) and, per budget, what is left after it."""

    expires_ms: int
    left: list[int]


@dataclass(frozen=True, slots=True)
class Refused:
    """The first budget that does not fit the estimate, and what it has left (nanos, may be negative)."""

    index: int
    left: int


@dataclass(frozen=True, slots=True)
class StoredReservation:
    """A stored reservation: its amount and the budgets it holds."""

    nanos: int
    budget_ids: tuple[str, ...]


class ReservationStore(Protocol):
    """Reservations in Redis; each call is atomic, as one Lua script run is on one Redis slot."""

    async def reserve(
        self, record: str, ledgers: Sequence[Ledger], nanos: int, ttl_ms: int, reservation_id: str
    ) -> Held | Refused:
        """Prune expired reservations of each ledger, then hold `nanos` on all of them, or on none."""
        ...

    async def stored(self, record: str) -> str | None:
        """The record written by `reserve` (`<nanos>:<budget ids>`), or None once it is gone."""
        ...

    async def release(self, pairs: Sequence[tuple[str, str]], member: str, nanos: int) -> bool:
        """Remove `member` from each (open set, total); True when it was still held anywhere."""
        ...

    async def state(self, ledgers: Sequence[Ledger]) -> list[tuple[int, int]]:
        """(committed, reserved) of each ledger after pruning, read in one atomic step."""
        ...


class RedisReservationStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._reserve = redis.register_script(_RESERVE)
        self._release = redis.register_script(_RELEASE)
        self._state = redis.register_script(_STATE)

    async def reserve(
        self, record: str, ledgers: Sequence[Ledger], nanos: int, ttl_ms: int, reservation_id: str
    ) -> Held | Refused:
        keys = [record]
        for ledger in ledgers:
            keys += [ledger.open, ledger.total, ledger.committed]
        ids = ",".join(ledger.budget_id for ledger in ledgers)
        args: list[int | str] = [nanos, ttl_ms, reservation_id, KEEP_MS, ids, *(ledger.cap for ledger in ledgers)]
        answer = [int(v) for v in await self._reserve(keys=keys, args=args)]
        if answer[0] == 0:
            return Refused(answer[1] - 1, answer[2])
        return Held(answer[1], answer[2:])

    async def stored(self, record: str) -> str | None:
        value = await self._redis.get(record)
        return value.decode() if isinstance(value, bytes) else value

    async def release(self, pairs: Sequence[tuple[str, str]], member: str, nanos: int) -> bool:
        if not pairs:
            return False
        return bool(await self._release(keys=[k for pair in pairs for k in pair], args=[member, nanos]))

    async def state(self, ledgers: Sequence[Ledger]) -> list[tuple[int, int]]:
        if not ledgers:
            return []
        keys = [k for ledger in ledgers for k in (ledger.open, ledger.total, ledger.committed)]
        flat = [int(v) for v in await self._state(keys=keys)]
        return [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]


def parse_stored(value: str) -> StoredReservation:
    nanos, _, ids = value.partition(":")
    return StoredReservation(int(nanos), tuple(i for i in ids.split(",") if i))


def member(reservation_id: str, nanos: int) -> str:
    return f"{reservation_id}:{nanos}"


def covers(budget: BudgetRecord, tags: Mapping[str, str]) -> bool:
    """Whether a call with these tags counts against the budget (its scope's tag has the scope's value)."""
    return budget.scope is None or tags.get(budget.scope.tag) == budget.scope.value


Enforcement = Literal["reserved", "no_hard_budget", "allowed_without_redis"]


@dataclass(frozen=True, slots=True)
class Allowed:
    reservation_id: str
    expires_at: datetime | None
    enforcement: Enforcement
    budgets: list[tuple[str, int | None]]  # (budget id, nanos left after this reservation, None if unknown)


@dataclass(frozen=True, slots=True)
class Denied:
    budget_id: str
    left: int


@dataclass(frozen=True, slots=True)
class Unavailable:
    budget_id: str


class Budgets(Protocol):
    def of_workspace(self, workspace_id: str) -> list[BudgetRecord]: ...


def new_reservation_id() -> str:
    return f"rsv_{secrets.token_hex(12)}"


class Reservations:
    """The decisions: which hard budgets a call falls under, the answer, and the Redis-down policy."""

    def __init__(self, store: ReservationStore, keys: KeySpace, book: Budgets) -> None:
        self._store = store
        self._keys = keys
        self._book = book

    def ledger(self, budget: BudgetRecord, month: str) -> Ledger:
        ws = budget.workspace_id
        scope = self._keys.scope(
            ws, budget.scope.tag if budget.scope else None, budget.scope.value if budget.scope else None
        )
        return Ledger(
            budget.budget_id,
            self._keys.open_reservations(ws, budget.budget_id),
            self._keys.reserved_total(ws, budget.budget_id),
            self._keys.month_spend(ws, month, scope),
            to_nanos(budget.amount_usd),
        )

    def covering(self, workspace_id: str, tags: Mapping[str, str]) -> list[BudgetRecord]:
        return [b for b in self._book.of_workspace(workspace_id) if b.hard and covers(b, tags)]

    async def reserve(
        self, workspace_id: str, nanos: int, tags: Mapping[str, str], ttl_seconds: int, now: datetime
    ) -> Allowed | Denied | Unavailable:
        budgets = self.covering(workspace_id, tags)
        reservation_id = new_reservation_id()
        if not budgets:
            metrics.RESERVATIONS.labels("no_hard_budget").inc()
            return Allowed(reservation_id, None, "no_hard_budget", [])
        ledgers = [self.ledger(b, month_id(now)) for b in budgets]
        try:
            outcome = await self._store.reserve(
                self._keys.reservation(workspace_id, reservation_id), ledgers, nanos, ttl_seconds * 1000, reservation_id
            )
        except RedisError as exc:
            return self._without_redis(workspace_id, budgets, reservation_id, type(exc).__name__)
        if isinstance(outcome, Refused):
            budget = budgets[outcome.index]
            metrics.RESERVATIONS.labels("denied").inc()
            metrics.RESERVATION_DENIALS.labels("budget_exceeded").inc()
            audit.warning(
                "reservation denied",
                extra={
                    "audit": "reservation.denied",
                    "reason": "budget_exceeded",
                    "workspace_id": workspace_id,
                    "budget_id": budget.budget_id,
                    "estimate_nanos": nanos,
                    "left_nanos": outcome.left,
                },
            )
            return Denied(budget.budget_id, outcome.left)
        metrics.RESERVATIONS.labels("reserved").inc()
        expires = datetime.fromtimestamp(outcome.expires_ms / 1000, UTC)
        return Allowed(
            reservation_id,
            expires,
            "reserved",
            [(b.budget_id, left) for b, left in zip(budgets, outcome.left, strict=True)],
        )

    def _without_redis(
        self, workspace_id: str, budgets: list[BudgetRecord], reservation_id: str, error: str
    ) -> Allowed | Unavailable:
        closed = [b for b in budgets if b.on_redis_unavailable == "deny"]
        reason = "budget_state_unavailable"
        if closed:
            metrics.RESERVATIONS.labels("unavailable_denied").inc()
            metrics.RESERVATION_DENIALS.labels(reason).inc()
            audit.warning(
                "reservation denied",
                extra={
                    "audit": "reservation.denied",
                    "reason": reason,
                    "workspace_id": workspace_id,
                    "budget_id": closed[0].budget_id,
                    "error": error,
                },
            )
            return Unavailable(closed[0].budget_id)
        metrics.RESERVATIONS.labels("unavailable_allowed").inc()
        audit.warning(
            "reservation allowed without redis",
            extra={
                "audit": "reservation.allowed_unenforced",
                "reason": reason,
                "workspace_id": workspace_id,
                "budget_ids": [b.budget_id for b in budgets],
                "error": error,
            },
        )
        return Allowed(reservation_id, None, "allowed_without_redis", [(b.budget_id, None) for b in budgets])

    async def release(self, workspace_id: str, reservation_id: str) -> bool:
        """Release an open reservation early; False when there is none (unknown, settled, expired, released)."""
        stored = await self._store.stored(self._keys.reservation(workspace_id, reservation_id))
        if stored is None:
            return False
        held = parse_stored(stored)
        pairs = [
            (self._keys.open_reservations(workspace_id, b), self._keys.reserved_total(workspace_id, b))
            for b in held.budget_ids
        ]
        released = await self._store.release(pairs, member(reservation_id, held.nanos), held.nanos)
        if released:
            metrics.RESERVATIONS_RELEASED.labels("deleted").inc()
        return released

    async def state(self, budget: BudgetRecord, now: datetime) -> BudgetState | None:
        """A hard budget's live state; None for a soft one or while Redis is unreachable."""
        if not budget.hard:
            return None
        ledger = self.ledger(budget, month_id(now))
        try:
            [(committed, reserved)] = await self._store.state([ledger])
        except RedisError:
            return None
        return BudgetState(
            period=month_id(now),
            committed_usd=format(from_nanos(committed), "f"),
            reserved_usd=format(from_nanos(reserved), "f"),
            remaining_usd=format(from_nanos(ledger.cap - committed - reserved), "f"),
        )
