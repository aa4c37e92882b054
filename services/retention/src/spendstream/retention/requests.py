"""A deletion request and its state, as kept on the compacted `retention.requests.v1`.

Request ids are scoped by workspace: two workspaces may use the same id, and each names its own request (a
refusal would tell one tenant which ids another has used). A request is keyed `<workspace_id>/<request_id>`
on the topic and its receipt likewise on `audit.receipts.v1`; records keyed by the bare request id (written
before ids were scoped, or by a tool that still does) are adopted by the workspace in their value and moved.

The topic is the system of record: whatever retention knows about a request it has written there first, so
a worker killed at any line resumes from the last record after a restart. Every record retention writes has
a higher `revision` than the one before; a compliance tool submits a request by writing `state=requested`
with revision 0. Once a request is verified or failed, its final record drops the raw `customer_id` (only
its keyed hash stays) and the compacted topic forgets the earlier records that held it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, TypedDict

import uuid_utils
from pydantic import BaseModel, Field

from spendstream.common.erasure import DeletionRequest, Origin, Receipt, State

Subject = Literal["workspace", "customer"]


def new_request_id() -> str:
    return f"del_{uuid_utils.uuid7().hex}"


class SharedFields(TypedDict):
    """The fields a request shows wherever it is shown: on its own (`RequestView`) and as a row of the list."""

    request_id: str
    subject: Subject
    customer_hash: str | None
    state: State
    reason: str | None
    origin: Origin
    requested_by: str
    requested_at: datetime
    updated_at: datetime | None


def shared_fields(request: DeletionRequest) -> SharedFields:
    """What every view of `request` shows of it; never the raw customer_id (its keyed hash at most)."""
    customer = request.customer_id is not None or request.customer_hash is not None
    return SharedFields(
        request_id=request.request_id,
        subject="customer" if customer else "workspace",
        customer_hash=request.customer_hash,
        state=request.state,
        reason=request.reason,
        origin=request.origin,
        requested_by=request.requested_by,
        requested_at=request.requested_at,
        updated_at=request.updated_at,
    )


class RequestView(BaseModel):
    """What `GET /v1/deletions/{id}` and the CLI show: state and receipt, never the raw customer_id."""

    request_id: str
    workspace_id: str
    subject: Subject
    customer_hash: str | None
    state: State
    reason: str | None
    origin: Origin
    requested_by: str
    requested_at: datetime
    updated_at: datetime | None
    attempts: int
    reported: list[str]
    receipt: Receipt | None

    @classmethod
    def of(cls, request: DeletionRequest) -> RequestView:
        reported = sorted(
            request.receipt.owner_names()
            if request.receipt
            else [o for o, r in request.reports.items() if r.status == "done"]
        )
        return cls(
            **shared_fields(request),
            workspace_id=request.workspace_id,
            attempts=request.attempts,
            reported=reported,
            receipt=request.receipt,
        )


class SubmittedView(RequestView):
    """The answer to a new request: its view, and for a workspace erasure asked over HTTP its receipt token."""

    receipt_token: str | None = Field(
        default=None,
        description="A workspace erasure's receipt token, in this answer only (retention keeps its SHA-256 alone): "
        "send it as `X-Receipt-Token` to `GET /v1/deletions/{request_id}/receipt` to read the receipt once the "
        "workspace's keys and sessions are gone. Absent for a customer's erasure and for a repeated request_id.",
    )
