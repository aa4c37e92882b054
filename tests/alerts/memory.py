"""The in-memory stand-in for alerts' Redis: the semantics of the Lua scripts in spend.py and thresholds.py,
in Python, for the tests of alerts' decisions that need neither Redis nor Kafka.

Each method runs without an `await` inside, so it is atomic on the event loop as a script is on Redis.
Expiry follows the wall clock, as Redis' does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from spendstream.alerts.spend import Increments


@dataclass
class _Value:
    value: int | str
    expire_at: float | None  # unix time; None: never


class MemoryStore:
    """A SpendStore and a MarkerStore over one dict, as both live in one Redis."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._data: dict[str, _Value] = {}
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

    async def add_once(self, increments: Sequence[Increments]) -> int:
        added = 0
        for one in increments:
            if one.offset <= self._int(one.mark, -1):
                continue
            for key, (amount, expire_at) in one.counters.items():
                self._set(key, self._int(key, 0) + amount, expire_at)
            self._set(one.mark, one.offset, self._clock() + one.mark_ttl_seconds)
            added += 1
        return added

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
