"""retention's HTTP surface: deletion requests, their status and list, and the retention policy; the workspace is
the caller's (key or session).

A customer's erasure needs `erasures.customer`, the whole workspace's `erasures.workspace` too (an owner's);
reading a request's state and receipt, the list of requests and the retention policy `deletions.read`. A workspace
erasure's receipt is also readable with its receipt token alone (`receipt_tokens.py`), since the erasure deletes
the keys and sessions that asked for it."""

# No `from __future__ import annotations` here: FastAPI must evaluate the Annotated[..., Depends(auth)]
# parameters at definition time, where `auth` is a local of the router factory.

from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from spendstream.common.auth_brake import too_many_failures
from spendstream.common.clients import client_address
from spendstream.common.erasure import DeletionRequest, State
from spendstream.common.errors import AUTH, responses
from spendstream.common.http_auth import Access, Caller, forbidden
from spendstream.common.links import links
from spendstream.retention.clock import Clock
from spendstream.retention.listing import CURSOR_PATTERN, DeletionPage, page
from spendstream.retention.policy import RetentionPolicy, policy_of
from spendstream.retention.receipt_tokens import HEADER, new_token, opened_by
from spendstream.retention.requests import RequestView, SubmittedView, new_request_id
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
    brake = access.keys.brake  # the receipt route brakes guessed tokens as the keys' check brakes guessed keys

    @router.post(
        "/v1/deletions",
        status_code=202,
        response_model=SubmittedView,
        responses={
            202: {"links": links("request_id", "request_id", ("GET", "/v1/deletions/{request_id}"))},
            200: {"model": RequestView, "description": "this request_id was posted before: that request, unchanged"},
            **responses(400, 409, s409="this request_id names another request of the workspace"),
        },
        summary="Erase the caller's workspace, or one customer_id inside it, and prove it",
        description="A customer's erasure needs the permission `erasures.customer`; the whole workspace's (no "
        "`customer_id`) needs `erasures.workspace` as well. A new workspace erasure's answer carries "
        "`receipt_token` once: the erasure deletes the workspace's keys and sessions, and that token alone then "
        "reads the receipt (`GET /v1/deletions/{request_id}/receipt`). Keep it; it is never shown again.",
    )
    async def request_deletion(
        body: DeletionBody, principal: Annotated[Caller, Depends(access.require("erasures.customer"))]
    ) -> JSONResponse:
        if body.customer_id is None and not principal.can("erasures.workspace"):
            raise forbidden("erasing the whole workspace needs the permission erasures.workspace")
        # The workspace's erasure deletes the credentials that asked: its receipt gets a credential of its own.
        token, token_hash = new_token() if body.customer_id is None else (None, None)
        request = DeletionRequest(
            request_id=body.request_id or new_request_id(),
            workspace_id=principal.workspace_id,
            customer_id=body.customer_id,
            origin="http",
            requested_by=principal.actor_id,
            requested_at=clock.now(),
            receipt_token_hash=token_hash,
        )
        try:
            stored, created = await coordinator.submit(request)
        except RequestConflict:
            raise HTTPException(
                409,
                detail={"error": "request_id_in_use", "message": "this request_id names another request of yours"},
            ) from None
        answer = RequestView.of(stored).model_dump(mode="json")
        if created and token is not None:
            # Shown here once: a repeat of the request id answers without it (only its digest was kept).
            answer["receipt_token"] = token
        return JSONResponse(answer, status_code=202 if created else 200)

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
        "/v1/deletions/{request_id}/receipt",
        response_model=RequestView,
        # No key and no session: the token is this route's credential, and it outlives the workspace's keys.
        responses=responses(
            401,
            429,
            s401="no `X-Receipt-Token`, or not the receipt token of a request with this id (the same answer for a "
            "request that does not exist)",
        ),
        summary="A workspace erasure's state and receipt, by its receipt token alone",
        description="For the requester of a workspace erasure once the workspace's keys and sessions are gone. "
        f"Authenticated only by the header `{HEADER}`: the `receipt_token` shown once in the answer to "
        "`POST /v1/deletions` (never a query parameter: URLs end up in logs). Answers what "
        "`GET /v1/deletions/{request_id}` answers. A wrong token and an unknown request id both answer `401`; "
        "too many failures from one client answer `429` with `Retry-After`.",
    )
    async def deletion_receipt(
        request_id: str,
        request: Request,
        x_receipt_token: Annotated[
            str | None,
            Header(alias=HEADER, description="the `receipt_token` of the answer to the workspace erasure's request"),
        ] = None,
    ) -> RequestView:
        address = client_address(request)
        if wait := brake.address_wait(address):
            raise HTTPException(*too_many_failures(wait))
        if not x_receipt_token:
            raise HTTPException(
                401,
                detail={
                    "error": "receipt_token_required",
                    "message": f"this route is authenticated by the header {HEADER} alone: the receipt_token of "
                    "the answer to the workspace erasure's request",
                },
            )
        found = opened_by(coordinator.with_id(request_id), x_receipt_token)
        if found is None:
            if wait := brake.failed(address, x_receipt_token):
                raise HTTPException(*too_many_failures(wait))
            raise HTTPException(
                401,
                detail={
                    "error": "invalid_receipt_token",
                    "message": f"{HEADER} is not the receipt token of a deletion request with this id",
                },
            )
        return RequestView.of(found)

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
