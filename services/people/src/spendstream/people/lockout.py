"""Temporary lockout after repeated failed sign-ins, per account and per client address, counted in Redis.

Each failure increments two fixed-window counters: one for the account (the e-mail as typed, normalised, known
or not, so that the lockout tells nobody whether an address has an account) and one for the client address.
The failure that reaches a limit locks that account or address for `signin_lockout_seconds`; a locked sign-in
is answered 429 with Retry-After before any password is checked, so guesses made meanwhile are worth nothing.
A successful sign-in clears the account's counter. Counters are shared by every replica (Redis) and name the
account and the address only by keyed hashes (a KEK-derived key), never in clear.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import unicodedata
from typing import Any

import redis.asyncio as aioredis

from spendstream.common import crypto
from spendstream.people.settings import PeopleSettings

# KEYS: counter, lock. ARGV: window ms, limit, lockout ms. Returns the lockout's ms when this failure set it.
_FAIL = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
if n >= tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
  redis.call('DEL', KEYS[1])
  return tonumber(ARGV[3])
end
return 0
"""


def _seconds(ms: int) -> int:
    return max(1, math.ceil(ms / 1000))


class Lockout:
    """Failed sign-in counters and lockouts for one installation."""

    def __init__(self, settings: PeopleSettings, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._prefix = f"{settings.redis_prefix}people:signin"
        self._key = crypto.derived_key(settings.kek_bytes(), "signin-lockout")
        self._window_ms = int(settings.signin_failure_window_seconds * 1000)
        self._lockout_ms = int(settings.signin_lockout_seconds * 1000)
        self._per_account = settings.signin_failures_per_account
        self._per_address = settings.signin_failures_per_address

    def _digest(self, kind: str, value: str) -> str:
        return hmac.new(self._key, f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()[:40]

    def _keys(self, kind: str, value: str) -> tuple[str, str]:
        digest = self._digest(kind, value)
        return f"{self._prefix}:failures:{kind}:{digest}", f"{self._prefix}:locked:{kind}:{digest}"

    @staticmethod
    def _account(email: str) -> str:
        return unicodedata.normalize("NFKC", email).strip().lower()

    async def wait(self, email: str, address: str) -> int:
        """Seconds until the account and the address may try again; 0 when neither is locked."""
        waits = [await self._redis.pttl(self._keys("account", self._account(email))[1])]
        if address:
            waits.append(await self._redis.pttl(self._keys("address", address)[1]))
        longest = max(int(w) for w in waits)  # -2: no such key, -1: no expiry (never written so)
        return _seconds(longest) if longest > 0 else 0

    async def failed(self, email: str, address: str) -> int:
        """Count one failure; the seconds of the lockout it started, or 0."""
        started = [await self._fail("account", self._account(email), self._per_account)]
        if address:
            started.append(await self._fail("address", address, self._per_address))
        longest = max(started)
        return _seconds(longest) if longest > 0 else 0

    async def _fail(self, kind: str, value: str, limit: int) -> int:
        counter, lock = self._keys(kind, value)
        result: Any = await self._redis.eval(
            _FAIL, 2, counter, lock, str(self._window_ms), str(limit), str(self._lockout_ms)
        )
        return int(result)

    async def succeeded(self, email: str) -> None:
        """A successful sign-in: the account's failures are forgiven (the address's stay counted)."""
        await self._redis.delete(self._keys("account", self._account(email))[0])
