"""The only HTTP client the connectors use: it can send GET and nothing else (read-only by construction).

It honours `429` with `Retry-After`, backs off exponentially on `5xx` and network errors, and raises
`Unauthorised` on `401`/`403`. Errors carry the status code only: a provider's error body may quote the key.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import Any

import httpx

log = logging.getLogger(__name__)
Params = Mapping[str, str | int | list[str]]


class Unauthorised(Exception):
    """The provider refused the admin key (401 or 403)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the provider answered {status}")
        self.status = status


class ProviderUnavailable(Exception):
    """The provider kept failing (429, 5xx, network) through every attempt; `reason` is a code."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the provider kept failing ({reason})")
        self.reason = reason


class ReadOnlyHttp:
    """GET-only access to one provider's API; its one public method is `get`."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        max_attempts: int,
        backoff_seconds: float,
        max_wait_seconds: float,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        timeout: float = 30.0,
    ) -> None:
        self._client = httpx.AsyncClient(base_url=base_url, headers=dict(headers), timeout=timeout)
        self._attempts = max_attempts
        self._backoff = backoff_seconds
        self._max_wait = max_wait_seconds
        self._sleep = sleep

    async def get(self, path: str, params: Params) -> Any:
        """The decoded JSON body of a successful GET, after retries; numbers with a fraction decode as Decimal
        (a bill is exact)."""
        reason = "none"
        for attempt in range(self._attempts):
            try:
                response = await self._client.get(path, params=params)
            except httpx.TransportError as exc:
                reason = type(exc).__name__
                await self._sleep(min(self._backoff * 2**attempt, self._max_wait))
                continue
            status = response.status_code
            if status in (401, 403):
                raise Unauthorised(status)
            if status == 429:
                reason = "http_429"
                await self._sleep(min(_retry_after(response, self._backoff * 2**attempt), self._max_wait))
                continue
            if status >= 500:
                reason = f"http_{status}"
                await self._sleep(min(self._backoff * 2**attempt, self._max_wait))
                continue
            if status != 200:
                raise ProviderUnavailable(f"http_{status}")
            return _decode(response)
        log.warning("provider request failed on every attempt", extra={"path": path, "reason": reason})
        raise ProviderUnavailable(reason)

    async def close(self) -> None:
        await self._client.aclose()


def _retry_after(response: httpx.Response, fallback: float) -> float:
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return fallback


def _decode(response: httpx.Response) -> Any:
    try:
        return json.loads(response.content, parse_float=Decimal)
    except ValueError:
        raise ProviderUnavailable("invalid_json") from None
