"""API-key authentication for every service's HTTP routes: `Authorization: Bearer <key>` or `X-API-Key`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Header, HTTPException, Request

from spendstream.common.auth_brake import too_many_failures
from spendstream.common.tenants import KeyDirectory, Principal, Scope


def require_scope(directory: KeyDirectory, *scopes: Scope) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: the caller's principal, or 401 (unknown/revoked key) / 403 (wrong scope), or 429
    with Retry-After once the client or the key's prefix has failed too often (`auth_brake.py`)."""

    # A coroutine: the check is a hash and a dict lookup, where FastAPI would run a plain function in its thread
    # pool, one thread hop per request (alerts' reservations answer before every provider call).
    async def dependency(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> Principal:
        key = x_api_key
        if authorization and authorization.lower().startswith("bearer "):
            key = authorization[7:].strip()
        address = request.client.host if request.client else ""
        if wait := directory.brake.address_wait(address):
            raise HTTPException(*too_many_failures(wait))
        principal = directory.authenticate(key) if key else None
        if principal is None:
            if key and (wait := directory.brake.failed(address, key)):
                raise HTTPException(*too_many_failures(wait))
            raise HTTPException(
                401,
                detail={"error": "unauthorized", "message": "missing, unknown or revoked API key"},
                headers={"WWW-Authenticate": "Bearer"},
            )
        if principal.scope not in scopes:
            raise HTTPException(
                403,
                detail={"error": "forbidden", "message": f"this route needs a key with scope {' or '.join(scopes)}"},
            )
        return principal

    return dependency
