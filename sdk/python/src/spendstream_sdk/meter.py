"""`Meter`: usage events sent in the background by a daemon thread, in batches."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from types import TracebackType
from typing import Unpack

import httpx

from spendstream_sdk.base import MeterBase, Tuning

log = logging.getLogger("spendstream_sdk")

# Every open meter, for the exit hook and the fork handler; held until closed (its thread holds it anyway).
_OPEN: set[Meter] = set()


class Meter(MeterBase):
    """Meters AI calls into spendstream: `track()` checks and queues an event and returns at once; a daemon
    thread sends the queue in gzipped batches (at most `batch_size` events and 1 MiB each) every
    `flush_interval` seconds, or as soon as a batch is full (`senders` threads, 1 by default, each with a request
    in flight: two keep the connection busy while the next batch is encoded).

    Sending never raises into the app: a full queue (`max_queue` events) drops new events, a 429, a 5xx or a
    connection error is retried with exponential back-off and jitter (honouring `Retry-After`) until the events
    are `max_age` seconds old, a batch the server refuses whole (a 4xx other than 429) is dropped; each case is
    counted in `stats` and logged by count, never by content. Ids are made at `track()`, so a retried batch the
    server had stored is answered as duplicates, never stored twice.

    `close()` (also run at interpreter exit, within `exit_timeout`) sends what is queued; `flush()` waits for it.
    After `os.fork()` the child has an empty queue and its own sender thread; the parent's events stay the
    parent's to send. Usable as a context manager.
    """

    def __init__(self, *, url: str, api_key: str, **tuning: Unpack[Tuning]) -> None:
        super().__init__(url=url, api_key=api_key, **tuning)
        self._start()
        _OPEN.add(self)

    def _start(self) -> None:
        self._wakeup = threading.Event()
        self._flushes = 0  # flush() calls waiting: the sender does not wait for flush_interval meanwhile
        self._changed = threading.Condition(self._lock)
        self._client = httpx.Client()
        self._threads = [
            threading.Thread(target=self._run, name=f"spendstream-meter-{i}", daemon=True) for i in range(self._senders)
        ]
        for thread in self._threads:
            thread.start()

    def _wake(self) -> None:
        self._wakeup.set()

    def _sleep(self, seconds: float) -> None:
        self._wakeup.wait(seconds)
        self._wakeup.clear()

    def _run(self) -> None:
        try:
            while True:
                if not self._ready() and self._deadline is None:
                    self._wakeup.wait(self._flush_interval)
                    self._wakeup.clear()
                items = self._take()
                if items:
                    self._send_items(self._client, items)
                with self._changed:
                    self._changed.notify_all()
                if not items and self._deadline is not None:
                    return
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    return
        except Exception as exc:  # a bug here must not vanish silently, nor raise into the app
            log.error("spendstream: the sender thread stopped: %s", type(exc).__name__)

    def flush(self, timeout: float = 10.0) -> bool:
        """Send what is queued now and wait until the server answered for it (or it was dropped); at most
        `timeout` seconds. True when nothing is left queued or in flight."""
        end = time.monotonic() + timeout
        with self._changed:
            self._flushes += 1
        try:
            self._wakeup.set()
            with self._changed:
                while not self._idle():
                    left = end - time.monotonic()
                    if left <= 0 or not any(t.is_alive() for t in self._threads):
                        return False
                    self._changed.wait(min(left, 0.05))
                    self._wakeup.set()
                return True
        finally:
            with self._changed:
                self._flushes -= 1

    def close(self, timeout: float = 10.0) -> bool:
        """Send what is queued within `timeout` seconds, then stop the sender; events still unsent then are
        dropped and counted (`stats.dropped_at_close`). Events tracked after close() are dropped and counted.
        True when the server answered for every event in time (none dropped at close). Idempotent."""
        dropped_before = self._dropped_at_close
        if not self._closed:
            self._closed = True
            self._deadline = time.monotonic() + timeout
            self._wakeup.set()
            for thread in self._threads:
                thread.join(max(0.0, self._deadline - time.monotonic()) + 1.0)
            self._drop_the_rest()
            self._client.close()
            _OPEN.discard(self)
        return self._idle() and self._dropped_at_close == dropped_before

    def __enter__(self) -> Meter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _after_fork_in_child(self) -> None:
        # The child inherits a copy of the queue and of the locks (perhaps held by the parent's sender, which
        # does not exist here) and the parent's sockets: all of it is replaced. Ids draw a new random part.
        self._reset()
        self._ids.reseed()
        self._start()


def _close_all() -> None:
    for meter in list(_OPEN):
        meter.close(meter._exit_timeout)


def _after_fork_in_child() -> None:
    for meter in list(_OPEN):
        meter._after_fork_in_child()


atexit.register(_close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
