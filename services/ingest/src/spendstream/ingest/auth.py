"""Who is calling: the API key's principal, checked against the key's scope and its workspace's status.

The workspace always comes from the key, never from the payload. A revoked or tombstoned key, or a key of a
deleted (or unknown) workspace, is 401; a cancelled workspace keeps its admin key (to reactivate) but sends
no more events (403) until it is reactivated.
"""

# No `from __future__ import annotations`: FastAPI evaluates the Header parameters at definition time.

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Header, HTTPException, Request

from spendstream.common.auth_brake import too_many_failures
from spendstream.common.tenants import KeyDirectory, Principal, Scope
from spendstream.ingest.workspaces import WorkspaceDirectory

UNAUTHORIZED = {"error": "unauthorized", "message": "missing, unknown or revoked API key"}


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return x_api_key


async def resolve(keys: KeyDirectory, workspaces: WorkspaceDirectory, key: str | None) -> Principal | None:
    """The principal of a valid key whose workspace exists and is not deleted, else None."""
    principal = keys.authenticate(key) if key else None
    if principal is None:
        return None
    workspace = workspaces.get(principal.workspace_id)
    if workspace is None:
        # The key's workspace record may be a poll behind the key itself (both written at creation).
        await workspaces.table.catch_up()
        workspace = workspaces.get(principal.workspace_id)
    if workspace is None or workspace.status == "deleted":
        return None
    return principal


def require(
    keys: KeyDirectory, workspaces: WorkspaceDirectory, *scopes: Scope, allow_cancelled: bool = False
) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the caller's principal, or 401 / 403 with a content-free error, or 429 with
    Retry-After once the client or the key's prefix has failed too often (`spendstream.common.auth_brake`)."""

    async def dependency(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> Principal:
        address = request.client.host if request.client else ""
        if wait := keys.brake.address_wait(address):
            raise HTTPException(*too_many_failures(wait))
        key = key_from_headers(authorization, x_api_key)
        principal = await resolve(keys, workspaces, key)
        if principal is None:
            if key and (wait := keys.brake.failed(address, key)):
                raise HTTPException(*too_many_failures(wait))
            raise HTTPException(401, detail=UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
        if principal.scope not in scopes:
            raise HTTPException(
                403,
                detail={"error": "forbidden", "message": f"this route needs a key with scope {' or '.join(scopes)}"},
            )
        workspace = workspaces.get(principal.workspace_id)
        if not allow_cancelled and workspace is not None and workspace.status == "cancelled":
            raise HTTPException(
                403,
                detail={
                    "error": "workspace_cancelled",
                    "message": "the workspace is cancelled; reactivate it to send events",
                },
            )
        return principal

    return dependency
