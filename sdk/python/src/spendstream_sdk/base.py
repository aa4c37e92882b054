"""What `Meter` and `AsyncMeter` share: `track()`, the queue, the counters and how a batch is settled.

The hot path is `track()`: build and check one event, queue it. Everything else (ISO timestamps, JSON, gzip,
HTTP, retries) happens in the sender, off the caller's thread. The sender's counters change under `_lock`, so a
`stats` snapshot is consistent; `track()` takes no lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypedDict

import httpx

from spendstream_sdk import batching
from spendstream_sdk.batching import Batch
from spendstream_sdk.context import _TAGS
from spendstream_sdk.events import IdMaker, add_optional, build, event_id, iso_timestamp
from spendstream_sdk.outbox import Item, Outbox
from spendstream_sdk.sender import Backoff, Outcome, Verdict, events_url, headers, judge
from spendstream_sdk.stats import MeterStats

log = logging.getLogger("spendstream_sdk")

# A dropped or refused batch is logged at most this often (with the counts since the last line), so an outage
# does not flood the host app's logs.
_LOG_EVERY_SECONDS = 10.0


class _DropLog:
    """Warnings about lost events: counts and reason codes, never an event's fields."""

    def __init__(self) -> None:
        self._pending: dict[str, int] = {}
        self._last = 0.0
        self._lock = threading.Lock()

    def add(self, reason: str, count: int) -> None:
        with self._lock:
            self._pending[reason] = self._pending.get(reason, 0) + count
            now = time.monotonic()
            if now - self._last < _LOG_EVERY_SECONDS:
                return
            pending, self._pending, self._last = self._pending, {}, now
        log.warning(
            "spendstream: events not stored: %s", ", ".join(f"{n} {reason}" for reason, n in sorted(pending.items()))
        )


class Tuning(TypedDict, total=False):
    """A meter's optional settings (keyword arguments of `Meter` and `AsyncMeter`)."""

    batch_size: int  # events per request, at most 500
    flush_interval: float  # seconds a partial batch waits before it is sent
    max_queue: int  # events queued at most; beyond, new events are dropped and counted
    max_age: float  # seconds after track() after which an unsent event is dropped and counted
    request_timeout: float  # seconds per HTTP request
    backoff_base: float  # the first retry waits up to this many seconds, doubling per attempt
    backoff_max: float  # the longest back-off between two attempts (a Retry-After is honoured beyond it)
    exit_timeout: float  # seconds the exit hook spends sending what is left
    senders: int  # Meter: sender threads, each with one request in flight (AsyncMeter: one task)


class MeterBase:
    """The part of a meter that does not depend on how it sends (a thread or an event loop)."""

    def __init__(
        self,
        *,
        url: str,
        api_key: str,
        batch_size: int = batching.MAX_EVENTS_PER_BATCH,
        flush_interval: float = 1.0,
        max_queue: int = 100_000,
        max_age: float = 600.0,
        request_timeout: float = 10.0,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        exit_timeout: float = 5.0,
        senders: int = 1,
    ) -> None:
        if not 1 <= batch_size <= batching.MAX_EVENTS_PER_BATCH:
            raise ValueError(f"batch_size must be within 1 … {batching.MAX_EVENTS_PER_BATCH}")
        for name, value in (
            ("flush_interval", flush_interval),
            ("max_age", max_age),
            ("request_timeout", request_timeout),
            ("backoff_base", backoff_base),
            ("backoff_max", backoff_max),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be positive")
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        if not 1 <= senders <= 16:
            raise ValueError("senders must be within 1 … 16")
        self._senders = senders
        if not api_key:
            raise ValueError("api_key is required (an ingest key)")
        self._url = events_url(url)
        self._headers = headers(api_key)
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._max_age = max_age
        self._request_timeout = request_timeout
        self._backoff = Backoff(backoff_base, backoff_max)
        self._exit_timeout = exit_timeout
        self._ids = IdMaker()
        self._closed = False
        # Set by close(): the monotonic time after which unsent events are dropped (None: no deadline).
        self._deadline: float | None = None
        self._reset()

    def _reset(self) -> None:
        """A fresh queue and counters (at start, and in a forked child: the parent's events stay the parent's)."""
        self._outbox = Outbox(self._max_queue)
        self._lock = threading.Lock()
        self._drops = _DropLog()
        self._in_flight = 0
        self._sent = 0
        self._retried = 0
        self._rejected = 0
        self._dropped_queue_full = 0
        self._dropped_expired = 0
        self._dropped_refused = 0
        self._dropped_at_close = 0
        self._unmetered = 0

    # The caller's side.

    def track(
        self,
        *,
        provider: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        latency_ms: int,
        cached_input_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        cache_creation_input_tokens: int | None = None,
        cache_creation_1h_input_tokens: int | None = None,
        service_tier: str | None = None,
        reservation_id: str | None = None,
        cost_usd: float | int | None = None,
        timestamp: datetime | None = None,
        event_id: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Queue one usage event and return its id; the event is sent in the background.

        Raises `EventRefused` (a ValueError) at once, queuing nothing, when the server would refuse the event: a
        field of the wrong type or out of range, a part above its total (cached within input, reasoning within
        output), a bad tag key, a content-bearing field or a PII-looking tag value (the privacy guard the server
        runs). Never raises for anything about sending: a full queue drops the event and counts it in `stats`.

        Optional fields are sent only when given. `tags` are merged over those of the enclosing `tags(...)`
        blocks (these win). `event_id` defaults to a new UUIDv7-shaped id; `timestamp` to now (timezone-aware).
        """
        context = _TAGS.get()
        if tags:
            merged: dict[str, str] | None = {**context, **tags} if context else dict(tags)
        else:
            merged = dict(context) if context else None
        event = build(provider, model, input_tokens, output_tokens, latency_ms, merged)
        if not (
            cached_input_tokens is None
            and reasoning_tokens is None
            and cache_creation_input_tokens is None
            and cache_creation_1h_input_tokens is None
            and service_tier is None
            and reservation_id is None
            and cost_usd is None
        ):
            add_optional(
                event,
                {
                    "cached_input_tokens": cached_input_tokens,
                    "reasoning_tokens": reasoning_tokens,
                    "cache_creation_input_tokens": cache_creation_input_tokens,
                    "cache_creation_1h_input_tokens": cache_creation_1h_input_tokens,
                    "service_tier": service_tier,
                    "reservation_id": reservation_id,
                    "cost_usd": cost_usd,
                },
            )
        return self._enqueue(event, timestamp, event_id)

    def track_unmetered(
        self,
        *,
        provider: str,
        model: str,
        latency_ms: int,
        reason: str,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """Record a call whose usage the provider never reported (e.g. a stream closed before its usage chunk):
        an event with zero tokens and the tag `usage_missing=<reason>`, counted in `stats.unmetered`, so the call
        shows as unmetered rather than as $0. Returns the event id; raises `EventRefused` like `track()`."""
        context = _TAGS.get()
        merged = {**context, **(tags or {}), "usage_missing": reason}
        eid = self._enqueue(build(provider, model, 0, 0, latency_ms, merged), None, None)
        with self._lock:
            self._unmetered += 1
        return eid

    def _enqueue(self, event: dict[str, Any], timestamp: datetime | None, given_id: str | None) -> str:
        """Name and stamp a checked event and queue it (or count it dropped); its id."""
        now = time.time()
        eid = self._ids(now) if given_id is None else event_id(given_id)
        event["event_id"] = eid
        event["timestamp"] = now if timestamp is None else iso_timestamp(timestamp)
        items = self._outbox.items
        if self._closed:
            self._count_drop("at_close", 1)
        elif len(items) >= self._max_queue:
            self._count_drop("queue_full", 1)
        else:
            items.append((time.monotonic(), event))  # deque.append: atomic, no lock on the caller's path
            if len(items) == self._batch_size:
                self._wake()
        if self._needs_start:
            self._start_sender()
        return eid

    # An AsyncMeter starts its task on the loop of its first track(); a thread meter starts at once.
    _needs_start = False

    def _start_sender(self) -> None:
        """Start the sender now that an event waits (AsyncMeter: on the running loop, if any)."""

    def _wake(self) -> None:
        """Tell the sender a full batch is waiting (called once per batch, not per event)."""

    @property
    def stats(self) -> MeterStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            queued = len(self._outbox) + self._in_flight
            values = (
                self._sent,
                self._retried,
                self._rejected,
                self._dropped_queue_full,
                self._dropped_expired,
                self._dropped_refused,
                self._dropped_at_close,
                self._unmetered,
            )
        sent, retried, rejected, full, expired, refused, at_close, unmetered = values
        return MeterStats(
            tracked=queued + sent + rejected + full + expired + refused + at_close,
            queued=queued,
            sent=sent,
            retried=retried,
            rejected=rejected,
            dropped_queue_full=full,
            dropped_expired=expired,
            dropped_refused=refused,
            dropped_at_close=at_close,
            unmetered=unmetered,
        )

    # The sender's side.

    # Waiting flush() calls: while there are any, a partial batch does not wait for flush_interval.
    _flushes = 0

    def _ready(self) -> bool:
        """Whether the sender should send now rather than wait: a full batch, or anything queued while a flush
        or close waits for it."""
        queued = len(self._outbox)
        return queued >= self._batch_size or (queued > 0 and (self._flushes > 0 or self._deadline is not None))

    def _idle(self) -> bool:
        return len(self._outbox) == 0 and self._in_flight == 0

    def _take(self) -> list[Item]:
        """The next batch's items (marked in flight), after dropping the queued events older than max_age."""
        with self._lock:
            expired = self._outbox.take_older_than(time.monotonic() - self._max_age)
            items = self._outbox.take(self._batch_size)
            self._in_flight += len(items)
        if expired:
            self._count_drop("expired", expired)
        return items

    def _count_drop(self, reason: str, count: int, error: str = "") -> None:
        with self._lock:
            if reason == "queue_full":
                self._dropped_queue_full += count
            elif reason == "expired":
                self._dropped_expired += count
            elif reason == "refused":
                self._dropped_refused += count
            else:
                self._dropped_at_close += count
        self._drops.add(f"{reason} ({error})" if error else reason, count)

    def _settle(self, batch: Batch, verdict: Verdict) -> None:
        """Account for a batch the server answered for (or refused whole)."""
        count = len(batch.items)
        with self._lock:
            self._in_flight -= count
            if verdict.outcome is Outcome.SETTLED:
                self._sent += verdict.stored
                self._rejected += verdict.rejected
        if verdict.outcome is Outcome.REFUSED:
            self._count_drop("refused", count, verdict.error)
        elif verdict.rejected:
            self._drops.add(f"rejected ({verdict.error})", verdict.rejected)

    def _put_back(self, items: list[Item]) -> None:
        """Items taken for sending whose sender stopped before the server answered: queued again, first."""
        with self._lock:
            self._in_flight -= len(items)
            self._outbox.put_back(items)

    def _abandon(self, items: list[Item], reason: str) -> None:
        """Items taken for sending that will not be sent (expired while retrying, or out of time at close)."""
        with self._lock:
            self._in_flight -= len(items)
        self._count_drop(reason, len(items))

    def _retrying(self, batch: Batch) -> Batch | None:
        """The batch to send again after a failed attempt, without its events older than max_age (None when
        none is left); counts the retry."""
        with self._lock:
            self._retried += 1
        oldest_allowed = time.monotonic() - self._max_age
        if min(queued for queued, _ in batch.items) >= oldest_allowed:
            return batch
        fresh = [item for item in batch.items if item[0] >= oldest_allowed]
        self._abandon([item for item in batch.items if item[0] < oldest_allowed], "expired")
        if not fresh:
            return None
        (again,) = batching.encode(fresh)  # a part of a batch that fit fits
        return again

    def _drop_the_rest(self) -> None:
        """At close, after the deadline: whatever is still queued is dropped and counted."""
        with self._lock:
            left = len(self._outbox)
            self._outbox = Outbox(self._max_queue)
        if left:
            self._count_drop("at_close", left)

    def _send_sync(self, client: httpx.Client, batch: Batch) -> None:
        """Send one batch until the server answers for it, retrying what can be retried; give up (counting the
        events as dropped) when they pass max_age or when close()'s deadline comes."""
        attempt = 0
        current: Batch | None = batch
        while current is not None:
            timeout = self._time_left()
            if timeout <= 0:
                self._abandon(current.items, "at_close")
                return
            try:
                answer = client.post(self._url, content=current.body, headers=self._headers, timeout=timeout)
                verdict = judge(
                    answer.status_code, answer.content, answer.headers.get("retry-after"), len(current.items)
                )
            except httpx.HTTPError as exc:  # connection refused or reset, timeouts: the batch may be retried
                verdict = Verdict(Outcome.RETRY, error=type(exc).__name__)
            if verdict.outcome is not Outcome.RETRY:
                self._settle(current, verdict)
                return
            until = time.monotonic() + self._backoff.delay(attempt, verdict.retry_after)
            attempt += 1
            while (now := time.monotonic()) < until:
                if self._deadline is not None and until >= self._deadline:
                    self._abandon(current.items, "at_close")
                    return
                self._sleep(until - now)
            current = self._retrying(current)

    def _time_left(self) -> float:
        """The timeout of the next request: request_timeout, or less when close() set a deadline."""
        if self._deadline is None:
            return self._request_timeout
        return min(self._request_timeout, self._deadline - time.monotonic())

    def _sleep(self, seconds: float) -> None:
        """Wait before a retry (the thread sender wakes early when close() sets a deadline)."""
        time.sleep(seconds)

    def _send_items(self, client: httpx.Client, items: list[Item]) -> None:
        for batch in batching.encode(items):
            self._send_sync(client, batch)
