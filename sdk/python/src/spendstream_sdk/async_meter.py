"""`AsyncMeter`: usage events sent in the background by an asyncio task, in batches."""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import time
from types import TracebackType
from typing import Unpack

import httpx

from spendstream_sdk.base import MeterBase, Tuning, log
from spendstream_sdk.batching import Batch, encode
from spendstream_sdk.sender import Outcome, Verdict, judge

# Every open meter, held until it is closed so that the exit hook sends what an unclosed one still holds.
_OPEN: set[AsyncMeter] = set()


class AsyncMeter(MeterBase):
    """`Meter` for asyncio apps: the same `track()` (synchronous: it only queues), sent by a task on the event
    loop that first tracks an event or enters `async with` (an httpx.AsyncClient, no thread). Call `track()`
    from that loop's thread. `await aflush()` waits for the queue to be sent, `await aclose()` sends what is
    left and stops the task. At interpreter exit, events an unclosed meter still holds are sent synchronously
    (within `exit_timeout`), since the loop is gone by then. After `os.fork()` the child starts empty.
    """

    def __init__(self, *, url: str, api_key: str, **tuning: Unpack[Tuning]) -> None:
        super().__init__(url=url, api_key=api_key, **tuning)
        self._needs_start = True
        self._sending: Batch | None = None  # the batch being sent (after its expired events were dropped)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._loop_thread = 0
        self._flushes = 0
        _OPEN.add(self)

    def _ensure_started(self) -> bool:
        """Start the sender task on the running loop, if there is one and it has not started."""
        if self._task is not None and not self._task.done():
            return True
        if self._closed:
            return False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False  # no loop yet: events wait in the queue until a track() or `async with` inside one
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._wakeup = asyncio.Event()
        self._changed = asyncio.Event()
        self._client = httpx.AsyncClient()
        self._task = loop.create_task(self._run(), name="spendstream-meter")
        return True

    def _start_sender(self) -> None:
        if self._ensure_started():
            self._needs_start = False

    def _wake(self) -> None:
        wakeup, loop = self._wakeup, self._loop
        if wakeup is None or loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            wakeup.set()
        else:
            loop.call_soon_threadsafe(wakeup.set)

    async def _pause(self, seconds: float) -> None:
        assert self._wakeup is not None
        try:
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        except TimeoutError:
            pass
        self._wakeup.clear()

    async def _run(self) -> None:
        assert self._changed is not None
        try:
            while True:
                if not self._ready() and self._deadline is None:
                    await self._pause(self._flush_interval)
                items = self._take()
                pending = encode(items) if items else []
                try:
                    while pending:
                        await self._send(pending[0])
                        pending.pop(0)
                except asyncio.CancelledError:
                    # The loop is ending (asyncio.run cancels its tasks): what the server has not answered for
                    # goes back to the queue, for aclose() or the exit hook to send.
                    if pending:
                        self._put_back([item for batch in pending[1:] for item in batch.items])
                        self._put_back(self._sending.items if self._sending is not None else pending[0].items)
                    raise
                self._changed.set()
                if self._deadline is not None and (not items or time.monotonic() >= self._deadline):
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not vanish silently, nor raise into the app
            log.error("spendstream: the sender task stopped: %s", type(exc).__name__)

    async def _send(self, batch: Batch) -> None:
        """The coroutine twin of MeterBase._send_sync: the same verdicts, retries, expiry and deadline."""
        attempt = 0
        current: Batch | None = batch
        while current is not None:
            self._sending = current
            timeout = self._time_left()
            if timeout <= 0:
                self._abandon(current.items, "at_close")
                return
            try:
                answer = await self._client.post(
                    self._url, content=current.body, headers=self._headers, timeout=timeout
                )
                verdict = judge(
                    answer.status_code, answer.content, answer.headers.get("retry-after"), len(current.items)
                )
            except httpx.HTTPError as exc:
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
                await self._pause(until - now)
            current = self._retrying(current)

    async def aflush(self, timeout: float = 10.0) -> bool:
        """Send what is queued now and wait until the server answered for it (or it was dropped); at most
        `timeout` seconds. True when nothing is left queued or in flight."""
        if not self._ensure_started():
            return self._idle()
        assert self._changed is not None
        end = time.monotonic() + timeout
        self._flushes += 1
        try:
            while not self._idle():
                left = end - time.monotonic()
                if left <= 0 or self._task is None or self._task.done():
                    return False
                self._wake()
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), min(left, 0.05))
                except TimeoutError:
                    pass
            return True
        finally:
            self._flushes -= 1

    async def aclose(self, timeout: float = 10.0) -> bool:
        """Send what is queued within `timeout` seconds, then stop the task; events still unsent then are
        dropped and counted (`stats.dropped_at_close`). True when the server answered for every event in time
        (none dropped at close). Idempotent."""
        if self._closed:
            return self._idle()
        dropped_before = self._dropped_at_close
        self._ensure_started()
        self._closed = True
        self._deadline = time.monotonic() + timeout
        _OPEN.discard(self)
        if self._task is not None:
            self._wake()
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout + 1.0)
            except TimeoutError:
                self._task.cancel()
            await self._client.aclose()
        self._drop_the_rest()
        return self._idle() and self._dropped_at_close == dropped_before

    async def __aenter__(self) -> AsyncMeter:
        self._ensure_started()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    def _close_at_exit(self) -> None:
        # The loop is gone (or not running): what is left is sent from this thread, synchronously.
        self._closed = True
        self._deadline = time.monotonic() + self._exit_timeout
        with httpx.Client() as client:
            while items := self._take():
                self._send_items(client, items)
        self._drop_the_rest()

    def _after_fork_in_child(self) -> None:
        self._reset()
        self._ids.reseed()
        self._loop = self._task = self._wakeup = self._changed = None
        self._needs_start = True


def _close_all() -> None:
    for meter in list(_OPEN):
        meter._close_at_exit()


def _after_fork_in_child() -> None:
    for meter in list(_OPEN):
        meter._after_fork_in_child()


atexit.register(_close_all)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
