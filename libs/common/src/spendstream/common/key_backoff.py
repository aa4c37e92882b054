"""Waiting on a data key the KEK cannot unwrap (tenants.KeyUnavailable): paced retries, a bounded log, a metric.

A wrong KEK is an operator's error, not a poison record: once the right KEK is configured the same record reads
again. So a consumer that meets one neither drops nor dead-letters the record: it waits (exponentially longer
per workspace, up to `max_delay`) and gives the batch back to Kafka to be redelivered. Every occurrence counts
in `spendstream_key_unavailable_total`; the log says so at most once per workspace per `log_every` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from prometheus_client import Counter

from spendstream.common.tenants import KeyUnavailable

log = logging.getLogger(__name__)

KEY_UNAVAILABLE = Counter(
    "spendstream_key_unavailable_total",
    "Batches or records of a workspace whose data key the configured KEK cannot unwrap, by who met them",
    ["consumer"],
)


class LogPace:
    """At most one log line per workspace per `every` seconds; says how many were held back since."""

    def __init__(self, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._every = every
        self._clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def due(self, workspace_id: str) -> int | None:
        """None when this occurrence is held back, else how many were held back before it."""
        now = self._clock()
        last = self._last.get(workspace_id)
        if last is not None and now - last < self._every:
            self._held[workspace_id] = self._held.get(workspace_id, 0) + 1
            return None
        self._last[workspace_id] = now
        return self._held.pop(workspace_id, 0)


def report(consumer: str, exc: KeyUnavailable, pace: LogPace) -> None:
    """Count the occurrence and log it if its workspace's line is due (ids only, never content)."""
    KEY_UNAVAILABLE.labels(consumer).inc()
    held = pace.due(exc.workspace_id)
    if held is not None:
        log.error(
            "data key cannot be unwrapped: the configured KEK is not the one that wrapped it",
            extra={
                "consumer": consumer,
                "workspace_id": exc.workspace_id,
                "wrapped_by": exc.wrapped_by,
                "held_back": held,
            },
        )


class KeyBackoff:
    """The pause a consumer takes before giving a batch back because of KeyUnavailable. The delay does not
    shrink again: the cure, the right KEK, takes a restart, which starts from `first_delay`."""

    def __init__(
        self, consumer: str, *, first_delay: float = 1.0, max_delay: float = 30.0, log_every: float = 60.0
    ) -> None:
        self._consumer = consumer
        self._first = first_delay
        self._max = max_delay
        self._delays: dict[str, float] = {}
        self._pace = LogPace(log_every)

    def delay(self, workspace_id: str) -> float:
        """The next pause for this workspace (doubles on each failure, up to max_delay)."""
        return self._delays.get(workspace_id, self._first)

    async def wait(self, exc: KeyUnavailable) -> None:
        """Count, log if due, and sleep; the caller then raises so the record comes again."""
        report(self._consumer, exc, self._pace)
        delay = self.delay(exc.workspace_id)
        self._delays[exc.workspace_id] = min(self._max, delay * 2)
        await asyncio.sleep(delay)
