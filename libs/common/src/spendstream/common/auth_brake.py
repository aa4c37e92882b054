"""A brake on guessing API keys: failed authentications counted per client address and per key prefix.

Past `auth_failures_per_address` failures from one address within `auth_failure_window_seconds`, every request
from that address is answered 429 for `auth_block_seconds`, before its key is looked at (so a guess made
meanwhile is neither checked nor answered). Past `auth_failures_per_key_prefix` failures of keys that begin
alike (from any number of addresses), wrong keys with that prefix get 429 too; a key that authenticates still
passes, since the prefix is shared by its owner and a block there would let anyone lock a tenant out.

Counts live in process memory, per replica: key checks never wait on the network, every service (retention has
no Redis) brakes the same way, and a Redis outage cannot open or close the brake. The price: a client spreading
its guesses over N replicas gets N times the allowance, which still turns thousands of guesses a minute into
tens. Addresses and prefixes are held only as keyed hashes (a per-process random key), never in clear.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter

from spendstream.common.settings import BaseServiceSettings

THROTTLED = Counter(
    "spendstream_auth_throttled_total",
    "Requests answered 429 after too many failed authentications, by the limit that was exceeded",
    ["limit"],
)
FAILURES = Counter("spendstream_auth_failures_total", "Requests whose API key did not authenticate")

PREFIX_CHARS = 16  # "ssk_<scope>_" and a few random characters: what a guesser holding part of a key keeps fixed
MAX_TRACKED = 100_000  # per kind; bounds the memory a client spraying addresses or prefixes can take


@dataclass
class _Tally:
    window_start: float
    failures: int = 0
    blocked_until: float = 0.0


class _Tallies:
    def __init__(self, limit: int, window: float, block: float) -> None:
        self._limit = limit
        self._window = window
        self._block = block
        self._tallies: dict[bytes, _Tally] = {}
        self._last_block_ends = 0.0  # past it no block is live: `wait` needs no hash and no lookup

    def any_live(self, now: float) -> bool:
        return now < self._last_block_ends

    def wait(self, key: bytes, now: float) -> float:
        tally = self._tallies.get(key)
        return max(0.0, tally.blocked_until - now) if tally is not None else 0.0

    def fail(self, key: bytes, now: float) -> float:
        tally = self._tallies.get(key)
        if tally is None or now - tally.window_start >= self._window and tally.blocked_until <= now:
            if tally is None and len(self._tallies) >= MAX_TRACKED:
                self._prune(now)
            tally = self._tallies[key] = _Tally(window_start=now)
        tally.failures += 1
        if tally.failures > self._limit and tally.blocked_until <= now:
            tally.blocked_until = now + self._block
            self._last_block_ends = max(self._last_block_ends, tally.blocked_until)
        return max(0.0, tally.blocked_until - now)

    def _prune(self, now: float) -> None:
        def idle(t: _Tally) -> bool:
            return t.blocked_until <= now and now - t.window_start >= self._window

        for key in [k for k, t in self._tallies.items() if idle(t)]:
            del self._tallies[key]
        # Still full (a client spraying addresses or prefixes): forget the oldest counts, never a live block.
        excess = len(self._tallies) - MAX_TRACKED // 2
        for key in [k for k, t in self._tallies.items() if t.blocked_until <= now][: max(0, excess)]:
            del self._tallies[key]


class AuthBrake:
    """Per-replica counts of failed authentications; says how long a client must wait (0: no wait)."""

    def __init__(self, settings: BaseServiceSettings, clock: Callable[[], float] = time.monotonic) -> None:
        window, block = settings.auth_failure_window_seconds, settings.auth_block_seconds
        self._addresses = _Tallies(settings.auth_failures_per_address, window, block)
        self._prefixes = _Tallies(settings.auth_failures_per_key_prefix, window, block)
        self._clock = clock
        self._salt = secrets.token_bytes(16)

    def _hash(self, kind: bytes, value: str) -> bytes:
        return hashlib.blake2b(kind + value.encode(), key=self._salt, digest_size=16).digest()

    def address_wait(self, address: str) -> int:
        """Seconds the address must wait before any request of it is looked at (0: go ahead)."""
        if not self._addresses.any_live(now := self._clock()):
            return 0
        seconds = self._addresses.wait(self._hash(b"a:", address), now)
        if seconds:
            THROTTLED.labels("address").inc()
        return math.ceil(seconds)

    def failed(self, address: str, key: str) -> int:
        """Count a key that did not authenticate; seconds to wait if the address or key prefix is now braked."""
        now = self._clock()
        FAILURES.inc()
        by_address = self._addresses.fail(self._hash(b"a:", address), now)
        by_prefix = self._prefixes.fail(self._hash(b"p:", key[:PREFIX_CHARS]), now)
        if by_address:
            THROTTLED.labels("address").inc()
        elif by_prefix:
            THROTTLED.labels("key_prefix").inc()
        return math.ceil(max(by_address, by_prefix))


def too_many_failures(seconds: int) -> tuple[int, dict[str, str], dict[str, str]]:
    """Status, body detail and headers of the 429 answer."""
    return (
        429,
        {
            "error": "too_many_failed_authentications",
            "message": "too many failed authentications from this client or for this key; retry after Retry-After",
        },
        {"Retry-After": str(max(1, seconds))},
    )
