"""The workspace admin HTTP API: API keys, data-key rotation, cancel and reactivate, each route naming the one
action (`access.py`) a key or a member's session must hold."""

# No `from __future__ import annotations`: FastAPI must evaluate the Annotated[..., Depends(auth)] parameters.

import functools
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from spendstream.common.access import may_issue_as
from spendstream.common.errors import AUTH, responses
from spendstream.common.http_auth import Access, Caller, forbidden
from spendstream.common.links import links
from spendstream.ingest.admin import Admin, AdminError, KeyInfo, WorkspaceInfo


class IssueKeyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scope: Literal["ingest", "read", "admin"]


class IssuedKeyResponse(BaseModel):
    key: str = Field(description="shown once; only its SHA-256 hash is stored")
    key_id: str
    scope: str


class DataKeyResponse(BaseModel):
    current_version: int


def _refusals_raised(endpoint: Callable[..., Coroutine[Any, Any, Any]]) -> Callable[..., Coroutine[Any, Any, Any]]:
    """The endpoint, its AdminError raised as the HTTPException of the same status and `{"error", "message"}`.

    Raised inside the endpoint, not answered around it: the access dependency must see the refusal to add its
    `failure` audit record after the `allowed` one."""

    @functools.wraps(endpoint)
    async def raising(*args: Any, **kwargs: Any) -> Any:
        try:
            return await endpoint(*args, **kwargs)
        except AdminError as exc:
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
            raise HTTPException(exc.status, {"error": exc.code, "message": exc.message}, headers) from None

    return raising


class _RefusalsAnswered(APIRoute):
    """A route whose AdminError is answered with its status and `{"error", "message"}` body."""

    def __init__(self, path: str, endpoint: Callable[..., Coroutine[Any, Any, Any]], **kwargs: Any) -> None:
        super().__init__(path, _refusals_raised(endpoint), **kwargs)


def build_admin_router(admin: Admin, access: Access) -> APIRouter:
    # Every route answers 404 when the key's workspace or the named key is unknown; 409 for rotation without
    # a data key.
    errors = responses(*AUTH, 404, 409, 422)
    router = APIRouter(prefix="/v1/admin", tags=["admin"], route_class=_RefusalsAnswered)
    Reader = Annotated[Caller, Depends(access.require("workspace.read"))]
    KeyReader = Annotated[Caller, Depends(access.require("keys.read"))]
    KeyIssuer = Annotated[Caller, Depends(access.require("keys.issue"))]
    KeyManager = Annotated[Caller, Depends(access.require("keys.manage"))]
    Settings = Annotated[Caller, Depends(access.require("settings.write"))]
    Lifecycle = Annotated[Caller, Depends(access.require("workspace.lifecycle"))]

    @router.get("/workspace", response_model=WorkspaceInfo, responses=errors, summary="The caller's workspace")
    async def get_workspace(caller: Reader) -> Any:
        return admin.workspace(caller.workspace_id)

    @router.get("/keys", response_model=list[KeyInfo], responses=errors, summary="List the workspace's API keys")
    async def list_keys(caller: KeyReader) -> Any:
        return admin.list_keys(caller.workspace_id)

    @router.post(
        "/keys",
        status_code=201,
        response_model=IssuedKeyResponse,
        responses={
            201: {"links": links("key_id", "key_id", ("DELETE", "/v1/admin/keys/{key_id}"))},
            **errors,
            **responses(400),
        },
        summary="Issue a new API key (shown once)",
        description="An `ingest` or `read` key needs `keys.issue`, an `admin` key `keys.manage`. A key issued by "
        "a member (signed in, or through a key that member issued) never exceeds that member's role and ends "
        "with the membership.",
    )
    async def issue_key(body: IssueKeyRequest, caller: KeyIssuer) -> Any:
        if not may_issue_as(caller.can, body.scope):
            raise forbidden(f"issuing a key of scope {body.scope} needs the permission keys.manage")
        issued = await admin.issue_key(caller.workspace_id, body.scope, caller.acting_member)
        return IssuedKeyResponse(key=issued.key, key_id=issued.key_id, scope=issued.scope)

    @router.delete(
        "/keys/{key_id}",
        response_model=KeyInfo,
        responses=errors,
        summary="Revoke an API key (every replica refuses it within seconds)",
    )
    async def revoke_key(key_id: str, caller: KeyManager) -> Any:
        return await admin.revoke_key(caller.workspace_id, key_id)

    @router.post(
        "/data-key/rotate",
        response_model=DataKeyResponse,
        responses={
            **errors,
            **responses(
                429,
                s429="rotated less than the rotation interval ago (one an hour by default), or too many failed "
                "authentications; see `Retry-After`",
            ),
        },
        summary="Rotate the workspace's data key; older versions still decrypt",
    )
    async def rotate_data_key(caller: Settings) -> Any:
        return DataKeyResponse(current_version=await admin.rotate_data_key(caller.workspace_id))

    @router.post(
        "/workspace/cancel",
        response_model=WorkspaceInfo,
        responses=errors,
        summary="Cancel the workspace: its data is deleted 30 days later unless reactivated",
    )
    async def cancel(caller: Lifecycle) -> Any:
        return await admin.cancel(caller.workspace_id)

    @router.post(
        "/workspace/reactivate",
        response_model=WorkspaceInfo,
        responses=errors,
        summary="Reactivate a cancelled workspace",
    )
    async def reactivate(caller: Lifecycle) -> Any:
        return await admin.reactivate(caller.workspace_id)

    return router
