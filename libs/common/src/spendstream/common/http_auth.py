"""Who is calling, and may they: one dependency for every route of every service, for keys and sessions alike.

`Access.require(action)` authenticates the caller -- an API key (`Authorization: Bearer` or `X-API-Key`) or a
member's session cookie -- and allows the request exactly when `access.py` permits the action to the key's scope
(capped by the issuing member's role, read live) or to the member's role. A cookie-authenticated request that
changes state must carry the session's CSRF token. An administrative action (every state change, and the reads
that carry data out: exports, the audit log) is recorded in the audit log before the route runs, and refused with
503 when the record cannot be published (fail closed); its failure, if it fails, is recorded after it.
"""

# No `from __future__ import annotations`: FastAPI evaluates the Header/Cookie parameters at definition time.

import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Annotated, Any, Literal

from fastapi import Cookie, Header, HTTPException, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from faststream.kafka import KafkaBroker
from pydantic import BaseModel, ConfigDict
from starlette.routing import BaseRoute

from spendstream.common.access import Action, allowed
from spendstream.common.audit import AuditTrail, AuditUnavailable
from spendstream.common.auth_brake import too_many_failures
from spendstream.common.clients import client_address
from spendstream.common.members import MemberDirectory
from spendstream.common.records import AuditOutcome, KeyScope, Role
from spendstream.common.sessions import CSRF_HEADER, SESSION_COOKIE, SessionRedis, SessionStore
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.tenants import KeyDirectory

log = logging.getLogger(__name__)

UNAUTHORIZED = {"error": "unauthorized", "message": "missing, unknown or revoked API key or session"}
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Metering traffic, not administration: counted by the completeness ledger, not the audit log.
UNAUDITED: frozenset[Action] = frozenset({"events.write", "reservations.write"})
# Reads that carry a workspace's data out in bulk are administrative actions too.
AUDITED_READS: frozenset[Action] = frozenset({"export.read", "audit.read"})
# A caller-chosen request id is kept (it joins the audit record to the caller's own logs) only in this shape.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# The attribute of a `require` dependency naming its action: tests and the OpenAPI document read it.
ACTION_ATTRIBUTE = "spendstream_action"


class Caller(BaseModel):
    """The authenticated caller of one request."""

    model_config = ConfigDict(frozen=True)

    workspace_id: str
    kind: Literal["key", "member"]
    actor_id: str  # the key id or the member id: what the audit log names, never a secret
    scope: KeyScope | None = None  # a key's
    role: Role | None = None  # a member's, or the issuing member's role of a key (None: an operator's key)
    issued_by: str | None = None  # a key's issuing member
    request_id: str

    @property
    def key_id(self) -> str | None:
        return self.actor_id if self.kind == "key" else None

    @property
    def member_id(self) -> str | None:
        return self.actor_id if self.kind == "member" else None

    @property
    def actor(self) -> str:
        """`key:<key id>` or `member:<member id>`: who a record the action writes names as its author."""
        return f"{self.kind}:{self.actor_id}"

    @property
    def acting_member(self) -> str | None:
        """The member behind the request: the signed-in member, or the member who issued the key. What the
        caller creates (a key) is capped by this member's role in turn; None for an operator's key."""
        return self.actor_id if self.kind == "member" else self.issued_by

    def can(self, action: Action) -> bool:
        """For a route whose request needs a second action (a budget with a webhook needs `webhooks.write`)."""
        if self.kind == "member":
            return allowed(action, role=self.role)
        return allowed(action, scope=self.scope, issuer=self.role)


# What a service may add to the check: given the caller and the action, raise an HTTPException to refuse
# (ingest: a deleted workspace's keys are unknown, a cancelled one sends no events).
WorkspaceGate = Callable[[Caller, Action], Awaitable[None]]


def key_from_headers(authorization: str | None, x_api_key: str | None) -> str | None:
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return x_api_key


def forbidden(message: str, error: str = "forbidden") -> HTTPException:
    return HTTPException(403, detail={"error": error, "message": message})


def unauthorized() -> HTTPException:
    return HTTPException(401, detail=UNAUTHORIZED, headers={"WWW-Authenticate": "Bearer"})


def action_of(dependency: object) -> Action | None:
    """The action a `require` dependency checks, or None for any other callable."""
    found: Action | None = getattr(dependency, ACTION_ATTRIBUTE, None)
    return found


def route_actions(route: APIRoute) -> list[Action]:
    """Every action a route's dependencies check (`require`), in order; one for every route of every service
    but the few authenticated otherwise (health, metrics, the Stripe webhook, internal and sign-in routes)."""
    found: list[Action] = []

    def walk(dependant: Dependant) -> None:
        for dependency in dependant.dependencies:
            if (action := action_of(dependency.call)) is not None:
                found.append(action)
            walk(dependency)

    walk(route.dependant)
    return found


_AUDIT_UNAVAILABLE: dict[str, Any] = {
    "description": "`audit_unavailable`: the action's audit record could not be written, so nothing was done; "
    "retry after `Retry-After` seconds",
    "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds to wait"}},
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
}


def api_routes(routes: Sequence[BaseRoute], prefix: str = "") -> list[tuple[str, APIRoute]]:
    """Every API route with its full path, those of included routers too (FastAPI keeps an included router
    as one node whose prefix applies to its routes)."""
    found: list[tuple[str, APIRoute]] = []
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            found.extend(api_routes(list(original.routes), prefix + route.include_context.prefix))  # type: ignore[attr-defined]
        elif isinstance(route, APIRoute):
            found.append((prefix + route.path, route))
    return found


def document_permissions(routes: Sequence[BaseRoute]) -> None:
    """Name each route's permission in its OpenAPI operation (`x-permission` and a line of its description)."""
    for _, route in api_routes(routes):
        actions = route_actions(route)
        if len(actions) != 1:
            continue
        route.openapi_extra = {**(route.openapi_extra or {}), "x-permission": actions[0]}
        audited = any(is_audited(actions[0], method) for method in route.methods or ())
        if audited and 503 not in route.responses and "503" not in route.responses:
            route.responses[503] = _AUDIT_UNAVAILABLE
        line = f"Permission: `{actions[0]}` (a member's role or a key's scope, see the README's roles table)."
        if line not in (route.description or ""):
            route.description = f"{route.description}\n\n{line}" if route.description else line


def is_audited(action: Action, method: str) -> bool:
    if action in UNAUDITED:
        return False
    return method not in SAFE_METHODS or action in AUDITED_READS


class Access:
    """One service's access check. `members` and `sessions` are optional for a service that takes keys alone,
    `audit` for one whose routes name unaudited actions alone; a key issued by a member is refused where there
    is no member directory to cap it, and an audited action where there is no audit trail (fail closed)."""

    def __init__(
        self,
        keys: KeyDirectory,
        members: MemberDirectory | None = None,
        sessions: SessionStore | None = None,
        audit: AuditTrail | None = None,
        gate: WorkspaceGate | None = None,
    ) -> None:
        self.keys = keys
        self.members = members
        self.sessions = sessions
        self.audit = audit
        self.gate = gate

    async def _from_key(self, key: str, request_id: str) -> Caller | None:
        principal = self.keys.authenticate(key)
        if principal is None:
            return None
        issuer: Role | None = None
        if principal.issued_by is not None:
            if self.members is None:
                return None
            member = await self.members.active(principal.issued_by, principal.workspace_id)
            if member is None:
                return None  # its member was removed: the key ended with the membership
            issuer = member.role
        return Caller(
            workspace_id=principal.workspace_id,
            kind="key",
            actor_id=principal.key_id,
            scope=principal.scope,
            role=issuer,
            issued_by=principal.issued_by,
            request_id=request_id,
        )

    async def _from_session(self, session_id: str, request_id: str) -> Caller | None:
        if self.sessions is None or self.members is None:
            return None
        try:
            session = await self.sessions.get(session_id)
        except Exception as exc:  # the service's Redis client raises its own types
            log.warning("session store unavailable", extra={"error": type(exc).__name__})
            raise HTTPException(
                503,
                detail={"error": "sessions_unavailable", "message": "sessions cannot be checked now; API keys can"},
                headers={"Retry-After": "5"},
            ) from None
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

    async def _record(
        self,
        caller: Caller,
        action: Action,
        outcome: AuditOutcome,
        request: Request,
        target: str,
        detail: dict[str, str] | None = None,
    ) -> None:
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
            client_address=client_address(request),
            detail=detail,
        )

    async def _refused(self, caller: Caller, action: Action, request: Request, reason: str) -> None:
        """Record a refused attempt. The refusal stands either way: an unwritable record never lets it through."""
        if action in UNAUDITED or self.audit is None:
            return
        try:
            await self._record(caller, action, "denied", request, _target(request), {"reason": reason})
        except AuditUnavailable:
            log.warning("audit record of a refusal not published", extra={"action": action, "reason": reason})

    async def authorize(
        self,
        action: Action,
        request: Request,
        key: str | None,
        session_id: str | None,
        csrf: str | None,
    ) -> Caller:
        """The caller allowed to perform `action`, else the HTTPException to answer (401, 403, 429)."""
        address = client_address(request)
        if wait := self.keys.brake.address_wait(address):
            raise HTTPException(*too_many_failures(wait))
        given = request.headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else str(uuid.uuid4())
        caller: Caller | None = None
        if key:
            caller = await self._from_key(key, request_id)
            if caller is None and (wait := self.keys.brake.failed(address, key)):
                raise HTTPException(*too_many_failures(wait))
        elif session_id:
            caller = await self._from_session(session_id, request_id)
        if caller is None:
            raise unauthorized()
        if caller.kind == "member" and request.method not in SAFE_METHODS:
            assert self.sessions is not None and session_id is not None  # a member caller came from a session
            if not self.sessions.csrf_ok(session_id, csrf):
                # A forged cross-site request looks exactly like this: the member's security review wants to see it.
                await self._refused(caller, action, request, "csrf")
                raise forbidden(f"a request signed in by session cookie must carry {CSRF_HEADER}", "csrf")
        if self.gate is not None:
            await self.gate(caller, action)
        if not caller.can(action):
            await self._refused(caller, action, request, "permission")
            raise forbidden(f"this route needs the permission {action}, which this caller does not have")
        return caller

    def require(self, action: Action) -> Callable[..., Any]:
        """A FastAPI dependency giving the `Caller`, or 401 / 403 / 429 (Retry-After) / 503 (audit unavailable).

        The returned callable names its action in the attribute `ACTION_ATTRIBUTE` (`action_of`)."""
        if action in UNAUDITED:
            # Metering traffic: a plain dependency, no audit record, no exit step on the hot path.
            async def unaudited(
                request: Request,
                authorization: Annotated[str | None, Header()] = None,
                x_api_key: Annotated[str | None, Header()] = None,
                x_csrf_token: Annotated[str | None, Header(alias=CSRF_HEADER)] = None,
                ss_session: Annotated[str | None, Cookie(alias=SESSION_COOKIE)] = None,
            ) -> Caller:
                key = key_from_headers(authorization, x_api_key)
                return await self.authorize(action, request, key, ss_session, x_csrf_token)

            setattr(unaudited, ACTION_ATTRIBUTE, action)
            return unaudited

        async def dependency(
            request: Request,
            authorization: Annotated[str | None, Header()] = None,
            x_api_key: Annotated[str | None, Header()] = None,
            x_csrf_token: Annotated[str | None, Header(alias=CSRF_HEADER)] = None,
            ss_session: Annotated[str | None, Cookie(alias=SESSION_COOKIE)] = None,
        ) -> AsyncIterator[Caller]:
            key = key_from_headers(authorization, x_api_key)
            caller = await self.authorize(action, request, key, ss_session, x_csrf_token)
            audited = is_audited(action, request.method)
            target = _target(request)
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

        setattr(dependency, ACTION_ATTRIBUTE, action)
        return dependency


def service_access(
    settings: BaseServiceSettings,
    service: str,
    keys: KeyDirectory,
    broker: KafkaBroker,
    redis: SessionRedis,
    gate: WorkspaceGate | None = None,
) -> tuple[Access, MemberDirectory]:
    """A service's `Access`: its keys, the replayed members (start and stop the returned directory with the
    service), sessions in the service's own Redis, and audit records published on its broker."""
    members = MemberDirectory(settings)
    access = Access(keys, members, SessionStore(settings, redis), AuditTrail(settings, broker, service), gate)
    return access, members


def _target(request: Request) -> str:
    # The route's path parameters: ids (a key id, a budget id, a request id), never a body's content.
    return "/".join(str(v) for v in request.path_params.values())
