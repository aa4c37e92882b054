"""The installation's retention policy as one workspace sees it (`GET /v1/retention`): how long usage data is
kept, how long a cancelled workspace waits before its erasure, which owners every erasure waits for, and the
workspace's own erasure schedule if its lifecycle set one.

The audit log's retention is rollup's setting (`audit_retention_months`) and is not shown here: retention does
not read rollup's configuration, and a figure it could only guess would mislead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from spendstream.retention.schedules import Schedules
from spendstream.retention.settings import RetentionSettings


class ScheduledErasure(BaseModel):
    cause: Literal["cancelled", "deleted"]  # the lifecycle event that set it
    since: datetime  # when that event happened
    erasure_due_at: datetime  # the whole workspace's erasure starts then, unless reactivated first
    request_id: str  # the id its erasure request gets, to follow it with GET /v1/deletions/{request_id}


class RetentionPolicy(BaseModel):
    workspace_id: str
    usage_retention_months: int  # raw events and rollups (SPENDSTREAM_RETENTION_MONTHS)
    cancellation_grace_days: int
    erasure_owners: list[str]  # the stores every erasure deletes from, in the receipt's order
    scheduled_erasure: ScheduledErasure | None


def policy_of(settings: RetentionSettings, schedules: Schedules, workspace_id: str) -> RetentionPolicy:
    event = schedules.table.get(workspace_id)
    schedule = schedules.of(event) if event is not None else None
    return RetentionPolicy(
        workspace_id=workspace_id,
        usage_retention_months=settings.retention_months,
        cancellation_grace_days=settings.cancellation_grace_days,
        erasure_owners=list(settings.owners()),
        scheduled_erasure=ScheduledErasure(
            cause="deleted" if schedule.cause == "deleted" else "cancelled",
            since=event.at,
            erasure_due_at=schedule.due_at,
            request_id=schedule.request_id,
        )
        if schedule is not None and event is not None
        else None,
    )
