"""The in-memory stand-in for alerts' Redis: the semantics of the Lua scripts in spend.py, thresholds.py and
reservations.py, in Python, for the tests of alerts' decisions that need neither Redis nor Kafka.

Each method runs without an `await` inside, so it is atomic on the event loop as a script is on Redis.
Expiry follows the wall clock, as Redis' does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spendstream.alerts.reservations import Held, Ledger, Refused
from spendstream.alerts.spend import Increments


@dataclass
class _Value:
    value: int | str
    expire_at: float | None  # unix time; None: never


class MemoryStore:
    """A SpendStore, a MarkerStore and a ReservationStore over one dict, as all live in one Redis."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._data: dict[str, _Value] = {}
        # Sorted sets of open reservations: member -> expiry (unix ms). Their totals live in _data.
        self._sets: dict[str, dict[str, int]] = {}
        self._clock = clock

    def keys(self) -> list[str]:
        return [k for k in list(self._data) if self._get(k) is not None]

    def _get(self, key: str) -> int | str | None:
        found = self._data.get(key)
        if found is None:
            return None
        if found.expire_at is not None and found.expire_at <= self._clock():
            del self._data[key]
            return None
        return found.value

    def _int(self, key: str, default: int) -> int:
        value = self._get(key)
        return default if value is None else int(value)

    def _set(self, key: str, value: int | str, expire_at: float | None) -> None:
        self._data[key] = _Value(value, expire_at)

    # SpendStore

    async def add_once(self, increments: Sequence[Increments]) -> tuple[int, int]:
        added = settled = 0
        for one in increments:
            if one.offset <= self._int(one.mark, -1):
                continue
            for key, (amount, expire_at) in one.counters.items():
                self._set(key, self._int(key, 0) + amount, expire_at)
            for release in one.releases:
                settled += self._release_one(release.open, release.total, release.member, release.nanos)
            self._set(one.mark, one.offset, self._clock() + one.mark_ttl_seconds)
            added += 1
        return added, settled

    async def values(self, keys: Sequence[str]) -> list[int]:
        return [self._int(k, 0) for k in keys]

    async def raise_to(self, key: str, nanos: int, expire_at: int) -> bool:
        if nanos <= self._int(key, 0):
            return False
        self._set(key, nanos, expire_at)
        return True

    # MarkerStore

    async def claim(
        self, marker: str, revision_key: str, revision: int, now: float, lease: float, expire_at: int, candidate: str
    ) -> str | None:
        if revision < self._int(revision_key, 0):
            return None
        held = self._get(marker)
        the_id = candidate
        if held is not None:
            state, since, held_id = str(held).split(":", 2)
            if state != "pending" or now - float(since) < lease:
                return None
            the_id = held_id
        self._set(marker, f"pending:{now:.3f}:{the_id}", expire_at)
        return the_id

    async def mark_sent(self, marker: str, alert_id: str, now: float) -> bool:
        held = self._get(marker)
        if held is None:
            return False
        state, _, held_id = str(held).split(":", 2)
        if state != "pending" or held_id != alert_id:
            return False
        self._set(marker, f"sent:{now:.3f}:{alert_id}", self._data[marker].expire_at)
        return True

    async def rearm(
        self, revision_key: str, revision: int, keep_seconds: int, spend_key: str, markers: Sequence[tuple[str, int]]
    ) -> int:
        self._set(revision_key, revision, self._clock() + keep_seconds)
        spend = self._int(spend_key, 0)
        rearmed = 0
        for marker, level in markers:
            if level > spend and self._get(marker) is not None:
                del self._data[marker]
                rearmed += 1
        return rearmed

    # ReservationStore

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _prune(self, open_key: str, total: str, now_ms: int) -> None:
        held = self._sets.get(open_key, {})
        gone = [m for m, expiry in held.items() if expiry <= now_ms]
        for m in gone:
            del held[m]
        if gone:
            self._set(total, self._int(total, 0) - sum(int(m.rsplit(":", 1)[1]) for m in gone), None)

    def _release_one(self, open_key: str, total: str, member: str, nanos: int) -> bool:
        if self._sets.get(open_key, {}).pop(member, None) is None:
            return False
        self._set(total, self._int(total, 0) - nanos, None)
        return True

    async def reserve(
        self, record: str, ledgers: Sequence[Ledger], nanos: int, ttl_ms: int, reservation_id: str
    ) -> Held | Refused:
        now = self._now_ms()
        left: list[int] = []
        for index, ledger in enumerate(ledgers):
            self._prune(ledger.open, ledger.total, now)
            left.append(ledger.cap - self._int(ledger.committed, 0) - self._int(ledger.total, 0))
            if nanos > left[-1]:
                return Refused(index, left[-1])
        expiry = now + ttl_ms
        for ledger in ledgers:
            self._sets.setdefault(ledger.open, {})[f"{reservation_id}:{nanos}"] = expiry
            self._set(ledger.total, self._int(ledger.total, 0) + nanos, None)
        ids = ",".join(ledger.budget_id for ledger in ledgers)
        self._set(record, f"{nanos}:{ids}", (expiry + 60_000) / 1000)
        return Held(expiry, [x - nanos for x in left])

    async def stored(self, record: str) -> str | None:
        value = self._get(record)
        return None if value is None else str(value)

    async def stored_many(self, records: Sequence[str]) -> list[str | None]:
        return [await self.stored(r) for r in records]

    async def release(self, pairs: Sequence[tuple[str, str]], member: str, nanos: int) -> bool:
        released = False
        for open_key, total in pairs:
            released = self._release_one(open_key, total, member, nanos) or released
        return released

    async def state(self, ledgers: Sequence[Ledger]) -> list[tuple[int, int]]:
        now = self._now_ms()
        out: list[tuple[int, int]] = []
        for ledger in ledgers:
            self._prune(ledger.open, ledger.total, now)
            out.append((self._int(ledger.committed, 0), self._int(ledger.total, 0)))
        return out
