"""What people's browser-facing routes share: the client's address and scheme behind a trusted proxy, the
session cookie's attributes, and the session-only access check of a member's own routes (`/v1/me...`)."""

# No `from __future__ import annotations`: FastAPI evaluates the Header/Cookie parameters at definition time.

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Cookie, Header, HTTPException, Request, Response

from spendstream.common.access import Action, allowed
from spendstream.common.audit import AuditTrail
from spendstream.common.sessions import CSRF_HEADER, SESSION_COOKIE, SessionRecord, SessionStore
from spendstream.people.directory import Directory, Membership, Person
from spendstream.people.lockout import Lockout
from spendstream.people.passwords import Passwords
from spendstream.people.settings import PeopleSettings
from spendstream.people.totp import SecondFactor

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
UNAUTHORIZED = {"error": "unauthorized", "message": "not signed in, or the session has ended"}
AUDIT_UNAVAILABLE = HTTPException(
    503,
    detail={"error": "audit_unavailable", "message": "the audit record could not be written; nothing was changed"},
    headers={"Retry-After": "5"},
)
NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class SignIn:
    """Everything sign-in and a member's own routes use, built once per service."""

    settings: PeopleSettings
    directory: Directory
    sessions: SessionStore
    passwords: Passwords
    lockout: Lockout
    factor: SecondFactor
    audit: AuditTrail

    def client_address(self, request: Request) -> str:
        """The peer's address, or the last hop of X-Forwarded-For when the peer is a trusted proxy."""
        peer = request.client.host if request.client else ""
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded and peer in self.settings.trusted_proxies:
            return forwarded.split(",")[-1].strip()
        return peer

    def over_https(self, request: Request) -> bool:
        """Whether the browser reached us over TLS: the scheme, or a trusted proxy's X-Forwarded-Proto."""
        peer = request.client.host if request.client else ""
        proto = request.headers.get("x-forwarded-proto")
        if proto and peer in self.settings.trusted_proxies:
            return proto.split(",")[0].strip().lower() == "https"
        return request.url.scheme == "https"

    def set_cookie(self, request: Request, response: Response, session_id: str) -> None:
        """The session cookie: out of scripts' reach, not sent on cross-site subrequests, Secure over TLS."""
        attributes = [
            f"{SESSION_COOKIE}={session_id}",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            f"Max-Age={int(self.settings.session_absolute_seconds)}",
        ]
        if self.over_https(request):
            attributes.append("Secure")
        response.headers.append("set-cookie", "; ".join(attributes))

    def clear_cookie(self, request: Request, response: Response) -> None:
        attributes = [f"{SESSION_COOKIE}=", "HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=0"]
        if self.over_https(request):
            attributes.append("Secure")
        response.headers.append("set-cookie", "; ".join(attributes))


@dataclass(frozen=True)
class Me:
    """A signed-in member on one of their own routes."""

    session_id: str
    session: SessionRecord
    membership: Membership
    person: Person
    request_id: str


def signed_in(ctx: SignIn, action: Action) -> Callable[..., Awaitable[Me]]:
    """A FastAPI dependency for a member's own routes: a live session of an active member whose role allows
    `action` (401 otherwise, 403 for the role), and on a state-changing request the session's CSRF token
    (403 {"error": "csrf"})."""

    async def dependency(
        request: Request,
        x_csrf_token: Annotated[str | None, Header(alias=CSRF_HEADER)] = None,
        ss_session: Annotated[str | None, Cookie(alias=SESSION_COOKIE)] = None,
    ) -> Me:
        if not ss_session:
            raise HTTPException(401, detail=UNAUTHORIZED)
        session = await ctx.sessions.get(ss_session)
        if session is None:
            raise HTTPException(401, detail=UNAUTHORIZED)
        membership = await ctx.directory.member(session.member_id)
        person = await ctx.directory.person(membership.person_id) if membership is not None else None
        if (
            membership is None
            or person is None
            or membership.status != "active"
            or membership.workspace_id != session.workspace_id
        ):
            await ctx.sessions.revoke(ss_session)  # removed meanwhile: the session goes with the membership
            raise HTTPException(401, detail=UNAUTHORIZED)
        if request.method not in SAFE_METHODS and not ctx.sessions.csrf_ok(ss_session, x_csrf_token):
            raise HTTPException(
                403, detail={"error": "csrf", "message": f"a cookie-authenticated change must carry {CSRF_HEADER}"}
            )
        if not allowed(action, role=membership.role):
            raise HTTPException(
                403, detail={"error": "forbidden", "message": f"this route needs the permission {action}"}
            )
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        return Me(ss_session, session, membership, person, request_id)

    return dependency
