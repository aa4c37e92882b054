"""Cancellation schedules with an injected clock: day 29 nothing, day 30 everything; reactivation keeps all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from spendstream.common.erasure import DeletionRequest, LifecycleEvent
from spendstream.common.topics import LIFECYCLE
from spendstream.retention.clock import ManualClock
from spendstream.retention.schedules import lifecycle_request_id
from tests.retention.conftest import product, stored
from tests.retention.pipeline import figures, publish, raw_count, rows_of_table_with
from tests.support import Isolation, create_workspace, eventually, usage_event

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def _lifecycle(iso: Isolation, event: LifecycleEvent) -> None:
    await publish(iso, LIFECYCLE, event.workspace_id, event.model_dump_json().encode())


def _rows(iso: Isolation, workspace_id: str) -> dict[str, int]:
    return {
        t: raw_count(iso, t, "workspace_id = {ws:String}", {"ws": workspace_id})
        for t in rows_of_table_with(iso, "workspace_id")
    }


async def test_cancelled_workspace_is_kept_29_days_erased_on_day_30_and_reactivation_keeps_it(iso: Isolation) -> None:
    leaving, returning = await create_workspace(iso, "leaving"), await create_workspace(iso, "returning")
    day0 = datetime.now(UTC)
    clock = ManualClock(day0)
    async with product(iso, clock) as p:
        await p.stream(leaving["ingest"], [usage_event(cost_usd=0.5), usage_event(cost_usd=0.75)])
        await p.stream(returning["ingest"], [usage_event(cost_usd=1.25)])
        await stored(iso, leaving["workspace_id"], 2)
        await stored(iso, returning["workspace_id"], 1)
        returning_figures = figures(iso, returning["workspace_id"])
        leaving_figures = figures(iso, leaving["workspace_id"])

        cancelled = LifecycleEvent(workspace_id=leaving["workspace_id"], kind="cancelled", at=day0)
        await _lifecycle(iso, cancelled)
        await _lifecycle(iso, LifecycleEvent(workspace_id=returning["workspace_id"], kind="cancelled", at=day0))
        assert await p.retention.tick() == []
        schedules = {s.workspace_id: s.due_at for s in p.retention.schedules.all()}
        assert schedules == {
            leaving["workspace_id"]: day0 + timedelta(days=30),
            returning["workspace_id"]: day0 + timedelta(days=30),
        }

        clock.set(day0 + timedelta(days=10))
        await _lifecycle(
            iso, LifecycleEvent(workspace_id=returning["workspace_id"], kind="reactivated", at=clock.now())
        )
        assert await p.retention.tick() == []

        clock.set(day0 + timedelta(days=29, hours=23, minutes=59))
        assert await p.retention.tick() == []
        assert p.retention.coordinator.requests() == []
        assert figures(iso, leaving["workspace_id"]) == leaving_figures
        assert leaving_figures["raw"] == [("cust-1", "2", "1.25", "2000", "400")]

        clock.set(day0 + timedelta(days=30))
        submitted = await p.retention.tick()
        # Due now. This tick submits it, unless a tick the service started itself on a lifecycle change (same
        # clock, same lock) ran just before it; either way exactly one request exists.
        assert [r.request_id for r in p.retention.coordinator.requests()] == [lifecycle_request_id(cancelled)]
        assert submitted in ([lifecycle_request_id(cancelled)], [])
        done = await p.settled(leaving["workspace_id"], lifecycle_request_id(cancelled))
        assert done.state == "verified", done.reason
        assert done.origin == "lifecycle" and done.requested_by == "lifecycle:cancelled"
        assert set(_rows(iso, leaving["workspace_id"]).values()) == {0}
        # Ticking again (or after a restart) finds the request and submits nothing twice.
        clock.set(day0 + timedelta(days=45))
        assert await p.retention.tick() == []
        assert len(p.retention.coordinator.requests()) == 1

    # Physical row counts of the survivor may shrink as ClickHouse merges; its figures may not change.
    assert figures(iso, returning["workspace_id"]) == returning_figures
    assert returning_figures["raw"] == [("cust-1", "1", "1.25", "1000", "200")]


async def test_a_deleted_workspace_is_erased_at_once_without_waiting_for_a_tick(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    clock = ManualClock()
    async with product(iso, clock) as p:
        await p.stream(ws["ingest"], [usage_event(cost_usd=0.5)])
        await stored(iso, ws["workspace_id"], 1)
        deleted = LifecycleEvent(workspace_id=ws["workspace_id"], kind="deleted", at=clock.now())
        await _lifecycle(iso, deleted)

        # No tick is called: the lifecycle record itself triggers the due schedule.
        async def submitted() -> DeletionRequest | None:
            return p.retention.coordinator.get(ws["workspace_id"], lifecycle_request_id(deleted))

        request = await eventually(submitted, timeout=30)
        assert request.requested_by == "lifecycle:deleted"
        done = await p.settled(ws["workspace_id"], request.request_id)
        assert done.state == "verified", done.reason
    assert set(_rows(iso, ws["workspace_id"]).values()) == {0}
