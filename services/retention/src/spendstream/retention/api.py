"""retention's HTTP surface: deletion requests, their status and list, and the retention policy; the workspace is
the caller's (key or session).

A customer's erasure needs `erasures.customer`, the whole workspace's `erasures.workspace` too (an owner's);
reading a request's state and receipt, the list of requests and the retention policy `deletions.read`."""

# No `from __future__ import annotations` here: FastAPI must evaluate the Annotated[..., Depends(auth)]
# parameters at definition time, where `auth` is a local of the router factory.

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from spendstream.common.erasure import DeletionRequest, State
from spendstream.common.errors import AUTH, responses
from spendstream.common.http_auth import Access, Caller, forbidden
from spendstream.common.links import links
from spendstream.retention.clock import Clock
from spendstream.retention.listing import CURSOR_PATTERN, DeletionPage, page
from spendstream.retention.policy import RetentionPolicy, policy_of
from spendstream.retention.requests import RequestView, new_request_id
from spendstream.retention.saga import Coordinator, RequestConflict
from spendstream.retention.schedules import Schedules
from spendstream.retention.settings import RetentionSettings


class DeletionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Absent: the whole workspace. Present: only that end customer's data inside it.
    customer_id: str | None = Field(default=None, min_length=1, max_length=120)
    # Optional idempotency key, per workspace: re-posting the same id returns the same request and, later,
    # receipt; another workspace's use of the same id is a request of its own.
    request_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")


def build_router(
    coordinator: Coordinator, clock: Clock, access: Access, settings: RetentionSettings, schedules: Schedules
) -> APIRouter:
    router = APIRouter(tags=["retention"], responses=responses(*AUTH, 422))

    @router.post(
        "/v1/deletions",
        status_code=202,
        response_model=RequestView,
        responses={
            202: {"links": links("request_id", "request_id", ("GET", "/v1/deletions/{request_id}"))},
            200: {"model": RequestView, "description": "this request_id was posted before: that request, unchanged"},
            **responses(400, 409, s409="this request_id names another request of the workspace"),
        },
        summary="Erase the caller's workspace, or one customer_id inside it, and prove it",
        description="A customer's erasure needs the permission `erasures.customer`; the whole workspace's (no "
        "`customer_id`) needs `erasures.workspace` as well.",
    )
    async def request_deletion(
        body: DeletionBody, principal: Annotated[Caller, Depends(access.require("erasures.customer"))]
    ) -> JSONResponse:
        if body.customer_id is None and not principal.can("erasures.workspace"):
            raise forbidden("erasing the whole workspace needs the permission erasures.workspace")
        request = DeletionRequest(
            request_id=body.request_id or new_request_id(),
            workspace_id=principal.workspace_id,
            customer_id=body.customer_id,
            origin="http",
            requested_by=principal.actor_id,
            requested_at=clock.now(),
        )
        try:
            stored, created = await coordinator.submit(request)
        except RequestConflict:
            raise HTTPException(
                409,
                detail={"error": "request_id_in_use", "message": "this request_id names another request of yours"},
            ) from None
        return JSONResponse(RequestView.of(stored).model_dump(mode="json"), status_code=202 if created else 200)

    @router.get(
        "/v1/deletions/{request_id}",
        response_model=RequestView,
        responses=responses(404, s404="no such deletion request in this workspace"),
        summary="State of a deletion request: requested, executing, verified or failed; with its receipt",
    )
    async def deletion_status(
        request_id: str, principal: Annotated[Caller, Depends(access.require("deletions.read"))]
    ) -> RequestView:
        # Ids are per workspace: the key's workspace is part of the lookup, so another's is never found.
        request = coordinator.get(principal.workspace_id, request_id)
        if request is None:
            raise HTTPException(404, detail={"error": "not_found", "message": "no such deletion request"})
        return RequestView.of(request)

    @router.get(
        "/v1/deletions",
        response_model=DeletionPage,
        summary="The workspace's erasure requests, newest first, a page at a time",
        description="Every request of the caller's workspace, however it was made (HTTP, the CLI, a compliance "
        "tool on Kafka, a cancellation's schedule). Rows show what `GET /v1/deletions/{request_id}` shows, less "
        "the receipt's body (`has_receipt` says whether there is one to fetch there); never a raw customer_id.",
    )
    async def list_deletions(
        principal: Annotated[Caller, Depends(access.require("deletions.read"))],
        limit: Annotated[int, Query(ge=1, le=200, description="rows per page")] = 50,
        cursor: Annotated[
            str | None, Query(pattern=CURSOR_PATTERN, description="`next_cursor` of the page before")
        ] = None,
        state: Annotated[State | None, Query(description="only the requests in this state")] = None,
    ) -> DeletionPage:
        return page(coordinator.of_workspace(principal.workspace_id), limit=limit, cursor=cursor, state=state)

    @router.get(
        "/v1/retention",
        response_model=RetentionPolicy,
        summary="The installation's retention policy for the caller's workspace, and its erasure schedule if any",
        description="How many months raw events and rollups are kept, how many days a cancelled workspace waits "
        "before its erasure, the stores every erasure deletes from, and the workspace's scheduled erasure (set by "
        "its cancellation or deletion, cleared by its reactivation). The audit log's retention is rollup's "
        "setting and is not part of this answer.",
    )
    async def retention_policy(
        principal: Annotated[Caller, Depends(access.require("deletions.read"))],
    ) -> RetentionPolicy:
        return policy_of(settings, schedules, principal.workspace_id)

    return router
