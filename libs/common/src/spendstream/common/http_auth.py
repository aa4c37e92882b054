"""Who is calling, and may they: one dependency for every route of every service, for keys and sessions alike.

`Access.require(action)` authenticates the caller -- an API key (`Authorization: Bearer` or `X-API-Key`) or a
member's session cookie -- and allows the request exactly when `access.py` permits the action to the key's scope
(capped by the issuing member's role, read live) or to the member's role. A cookie-authenticated request that
changes state must carry the session's CSRF token. A state-changing administrative action is recorded in the
audit log before the route runs, and refused with 503 when the record cannot be published (fail closed); its
failure, if it fails, is recorded after it.
"""

# No `from __future__ import annotations`: FastAPI evaluates the Header/Cookie parameters at definition time.

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import Cookie, Header, HTTPException, Request
from pydantic import BaseModel, ConfigDict

from spendstream.common.access import Action, allowed
from spendstream.common.audit import AuditTrail, AuditUnavailable
from spendstream.common.auth_brake import too_many_failures
from spendstream.common.members import MemberDirectory
from spendstream.common.records import KeyScope, Role
from spendstream.common.sessions import CSRF_HEADER, SESSION_COOKIE, SessionStore
from spendstream.common.tenants import KeyDirectory, Principal, Scope

log = logging.getLogger(__name__)

UNAUTHORIZED = {"error": "unauthorized", "message": "missing, unknown or revoked API key or session"}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Metering traffic, not administration: recorded by the completeness ledger, not the audit log.
UNAUDITED: frozenset[Action] = frozenset({"events.write", "reservations.write"})


class Caller(BaseModel):
    """The authenticated caller of one request."""

    model_config = ConfigDict(frozen=True)

    workspace_id: str
    kind: Literal["key", "member"]
    actor_id: str  # the key id or the member id: what the audit log names, never a secret
    scope: KeyScope | None = None  # a key's
    role: Role | None = None  # a member's, or the issuing member's role of a key
    request_id: str

    @property
    def key_id(self) -> str | None:
        return self.actor_id if self.kind == "key" else None

    @property
    def member_id(self) -> str | None:
        return self.actor_id if self.kind == "member" else None

    def can(self, action: Action) -> bool:
        """For a route whose request needs a second action (a budget with a webhook needs `webhooks.write`)."""
        if self.kind == "member":
            return allowed(action, role=self.role)
        return allowed(action, scope=self.scope, issuer=self.role)


def _key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return x_api_key


def forbidden(message: str, error: str = "forbidden") -> HTTPException:
    return HTTPException(403, detail={"error": error, "message": message})


class Access:
    """One service's access check; `members`, `sessions` and `audit` are optional only for unit tests and for the
    services (ingest's hot path) whose routes name unaudited actions alone."""

    def __init__(
        self,
        keys: KeyDirectory,
        members: MemberDirectory | None = None,
        sessions: SessionStore | None = None,
        audit: AuditTrail | None = None,
    ) -> None:
        self.keys = keys
        self.members = members
        self.sessions = sessions
        self.audit = audit

    async def _from_key(self, key: str, request_id: str) -> Caller | None:
        principal = self.keys.authenticate(key)
        if principal is None:
            return None
        issuer: Role | None = None
        if principal.issued_by is not None:
            member = await self.members.active(principal.issued_by, principal.workspace_id) if self.members else None
            if member is None:
                return None  # its member was removed: the key died with the membership
            issuer = member.role
        return Caller(
            workspace_id=principal.workspace_id,
            kind="key",
            actor_id=principal.key_id,
            scope=principal.scope,
            role=issuer,
            request_id=request_id,
        )

    async def _from_session(self, session_id: str, request_id: str) -> Caller | None:
        if self.sessions is None or self.members is None:
            return None
        session = await self.sessions.get(session_id)
        if session is None:
            return None
        member = await self.members.active(session.member_id, session.workspace_id)
        if member is None:
            await self.sessions.revoke(session_id)
            return None
        return Caller(
            workspace_id=session.workspace_id,
            kind="member",
            actor_id=session.member_id,
            role=member.role,
            request_id=request_id,
        )

    async def _record(self, caller: Caller, action: Action, outcome: Any, request: Request, target: str) -> None:
        if self.audit is None:
            raise AuditUnavailable("this service has no audit trail")
        await self.audit.record(
            workspace_id=caller.workspace_id,
            actor_kind=caller.kind,
            actor_id=caller.actor_id,
            action=action,
            outcome=outcome,
            target=target,
            request_id=caller.request_id,
            client_address=request.client.host if request.client else "",
        )

    def require(self, action: Action) -> Callable[..., AsyncIterator[Caller]]:
        """A FastAPI dependency: the caller, or 401 / 403 / 429 (Retry-After) / 503 (audit unavailable)."""

        async def dependency(
            request: Request,
            authorization: Annotated[str | None, Header()] = None,
            x_api_key: Annotated[str | None, Header()] = None,
            x_csrf_token: Annotated[str | None, Header(alias=CSRF_HEADER)] = None,
            ss_session: Annotated[str | None, Cookie(alias=SESSION_COOKIE)] = None,
        ) -> AsyncIterator[Caller]:
            address = request.client.host if request.client else ""
            if wait := self.keys.brake.address_wait(address):
                raise HTTPException(*too_many_failures(wait))
            request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
            key = _key_from_headers(authorization, x_api_key)
            caller: Caller | None = None
            if key:
                caller = await self._from_key(key, request_id)
                if caller is None and (wait := self.keys.brake.failed(address, key)):
                    raise HTTPException(*too_many_failures(wait))
            elif ss_session:
                caller = await self._from_session(ss_session, request_id)
            if caller is None:
                raise HTTPException(401, detail=UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})
            changes_state = request.method not in SAFE_METHODS
            if caller.kind == "member" and changes_state:
                assert self.sessions is not None and ss_session is not None
                if not self.sessions.csrf_ok(ss_session, x_csrf_token):
                    raise forbidden(f"a request signed in by session cookie must carry {CSRF_HEADER}", "csrf")
            target = "/".join(str(v) for v in request.path_params.values())
            if not caller.can(action):
                if action not in UNAUDITED and self.audit is not None:
                    try:
                        await self._record(caller, action, "denied", request, target)
                    except AuditUnavailable:
                        log.warning("audit record of a refusal not published", extra={"action": action})
                raise forbidden(f"this route needs the permission {action}, which this caller does not have")
            audited = changes_state and action not in UNAUDITED
            if audited:
                try:
                    await self._record(caller, action, "allowed", request, target)
                except AuditUnavailable:
                    raise HTTPException(
                        503,
                        detail={
                            "error": "audit_unavailable",
                            "message": "the action's audit record could not be written; nothing was changed",
                        },
                        headers={"Retry-After": "5"},
                    ) from None
            try:
                yield caller
            except Exception:
                if audited:
                    try:
                        await self._record(caller, action, "failure", request, target)
                    except AuditUnavailable:
                        log.warning("audit record of a failure not published", extra={"action": action})
                raise

        return dependency


def require_scope(directory: KeyDirectory, *scopes: Scope) -> Callable[..., Awaitable[Principal]]:
    """A key-only dependency for routes not yet named by an action (being replaced by `Access.require`)."""

    async def dependency(
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> Principal:
        key = _key_from_headers(authorization, x_api_key)
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
