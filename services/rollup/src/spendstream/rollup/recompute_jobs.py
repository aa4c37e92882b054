"""Re-pricing jobs inside rollup, the process that owns ClickHouse (a chDB directory opens in one process only).

Jobs run one at a time, in order of submission, as background tasks; each step (one mutation, one day's rollup)
holds the writer lock, so no batch insert, reconcile or sweep interleaves with it and the consumer waits at
most one step. A job prices with the replayed price book the writer prices with (`load_pricing`), so events
stored during the job are priced as the job prices them. A job the process died under is resumed at the next
start, from its durable cursor (recompute.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from spendstream.rollup import recompute
from spendstream.rollup.recompute import Pricing, Progress, Repricer, Request

log = logging.getLogger(__name__)


class RecomputeJobs:
    def __init__(self, repricer: Repricer, writer_lock: asyncio.Lock, load_pricing: Callable[[], Pricing]) -> None:
        self._repricer = repricer
        self._lock = writer_lock
        self._load_pricing = load_pricing
        self._one_at_a_time = asyncio.Lock()
        self._live: dict[str, Progress] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, request: Request) -> Progress:
        """Plan the job (or find the unfinished one of the same request and prices), record it, start it."""
        pricing = await asyncio.to_thread(self._load_pricing)
        plan = await asyncio.to_thread(self._repricer.plan, request, pricing)
        live = self._live.get(plan.job_id)
        if live is not None and live.state == "running":
            return live  # the same request is already under way
        progress = Progress(
            plan.job_id, "running", request.workspace_id, request.start, request.end, request.requested_by
        )
        progress.days_total = len({u.day for u in plan.units})
        progress.events_total = sum(u.events for u in plan.units)
        self._live[plan.job_id] = progress
        await asyncio.to_thread(self._repricer.record, progress, plan.fingerprint)
        log.info("audit: prices recompute requested", extra={"audit": "prices.recompute", **progress.jsonable()})
        task = asyncio.create_task(self._run(request, plan, progress), name=f"recompute:{plan.job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return progress

    async def _run(self, request: Request, plan: recompute.Plan, progress: Progress) -> None:
        async with self._one_at_a_time:
            # Read again: another job may have changed them since this one was planned.
            pricing = await asyncio.to_thread(self._load_pricing)
            try:
                for step in recompute.steps(self._repricer, request, pricing, progress, plan):
                    async with self._lock:
                        await asyncio.to_thread(step)
            except asyncio.CancelledError:
                raise  # stopping: the job stays 'running' and resumes at the next start
            except Exception as exc:
                progress.state, progress.error = "failed", type(exc).__name__
                log.exception("prices recompute failed", extra={"job_id": progress.job_id})
            else:
                progress.state = "done"
            progress.finished_at = datetime.now(UTC)
            await asyncio.to_thread(self._repricer.record, progress, plan.fingerprint)
            recompute.audit(progress)

    def progress(self, job_id: str) -> dict[str, Any] | None:
        """A job's progress: live while this process runs it, else as last recorded."""
        live = self._live.get(job_id)
        if live is not None:
            return live.jsonable()
        return self._repricer.job(job_id)

    async def resume(self) -> None:
        """Start again every job recorded as running (this process, or one before it, died under it)."""
        for record in await asyncio.to_thread(self._repricer.unfinished_jobs):
            request = Request(
                date.fromisoformat(record["start"]),
                date.fromisoformat(record["end"]),
                record["workspace_id"],
                record["requested_by"],
            )
            progress = await self.submit(request)
            if progress.job_id != record["job_id"]:
                # The prices changed since: the new job covers the range; the old one is closed as superseded.
                old = Progress(
                    record["job_id"], "failed", request.workspace_id, request.start, request.end, request.requested_by
                )
                old.error, old.finished_at = f"superseded by {progress.job_id}", datetime.now(UTC)
                await asyncio.to_thread(self._repricer.record, old, "")

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
