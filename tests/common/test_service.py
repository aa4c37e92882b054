"""Stopping a service's background loops: a swallowed cancellation must not hold shutdown forever. And the
collector tuning every served process gets."""

from __future__ import annotations

import asyncio
import gc

from spendstream.common.service import GC_GEN0_THRESHOLD, cancel_and_wait, tune_gc


async def test_a_loop_that_swallows_one_cancellation_still_ends() -> None:
    caught = 0

    async def loop() -> None:
        nonlocal caught
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                caught += 1
                if caught == 1:
                    continue  # what a library that swallows CancelledError does to the loop around it
                raise

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await cancel_and_wait(task)
    assert task.cancelled() and caught == 2


async def test_a_loop_that_never_ends_is_left_behind_after_the_grace_period() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await cancel_and_wait(task, grace_seconds=0.3)
    assert not task.done()
    release.set()
    task.cancel()  # wakes its sleep; the loop sees the release and returns
    await task


async def test_a_finished_or_missing_task_is_nothing_to_stop() -> None:
    async def done() -> None:
        return None

    task = asyncio.create_task(done())
    await task
    await cancel_and_wait(task)
    await cancel_and_wait(None)


def test_tune_gc_makes_young_collections_rare_and_freezes_what_is_alive() -> None:
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold()[0] == GC_GEN0_THRESHOLD
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
