"""A service's lifecycle and periodic work; stopping background loops (a swallowed cancellation must not hold
shutdown forever); and the collector tuning every served process gets."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from spendstream.common.service import GC_GEN0_THRESHOLD, Service, cancel_and_wait, periodic, tune_gc


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


async def test_periodic_work_that_fails_is_logged_by_type_alone_and_runs_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rounds = 0

    async def work() -> None:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise ValueError("customer cust-secret-42 broke it")

    with caplog.at_level(logging.WARNING, logger="spendstream.common.service"):
        task = asyncio.create_task(periodic("t:work", 0.01, work, immediately=True))
        async with asyncio.timeout(5):
            while rounds < 3:
                await asyncio.sleep(0.01)
        await cancel_and_wait(task)
    assert task.cancelled()
    [failure] = [r for r in caplog.records if r.getMessage() == "periodic work failed"]
    assert (vars(failure)["task"], vars(failure)["error"]) == ("t:work", "ValueError")
    assert "cust-secret-42" not in caplog.text


async def test_periodic_work_runs_at_once_when_woken_and_not_before_its_interval_otherwise() -> None:
    wake = asyncio.Event()
    rounds = 0

    async def work() -> None:
        nonlocal rounds
        rounds += 1

    task = asyncio.create_task(periodic("t:woken", 3600, work, wake=wake))
    await asyncio.sleep(0.05)
    assert rounds == 0
    wake.set()
    async with asyncio.timeout(5):
        while rounds < 1:
            await asyncio.sleep(0.01)
    await cancel_and_wait(task)
    assert rounds == 1


async def test_a_service_starts_in_order_is_ready_then_stops_its_loops_before_its_stop_steps() -> None:
    events: list[str] = []

    async def step(name: str) -> None:
        events.append(name)

    async def loop_work() -> None:
        events.append("loop")

    service = Service("s")
    service.on_start(lambda: step("a"), lambda: step("b"))
    service.every("s:loop", 3600, loop_work, immediately=True)
    service.on_stop(lambda: events.append("closed"))
    assert not service.ready()
    await service.start()
    assert service.ready() and events[:2] == ["a", "b"]
    async with asyncio.timeout(5):
        while "loop" not in events:
            await asyncio.sleep(0.01)
    await service.stop()
    assert not service.ready()
    assert events == ["a", "b", "loop", "closed"]
