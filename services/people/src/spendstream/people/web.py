"""What people's browser-facing routes share: the session cookie's attributes, and the access check of a member's
own routes (`/v1/me...`)."""

# No `from __future__ import annotations`: FastAPI evaluates the dependencies' annotations at definition time.

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Response

from spendstream.common.access import Action
from spendstream.common.audit import AuditTrail
from spendstream.common.clients import over_https
from spendstream.common.http_auth import Access, Caller
from spendstream.common.sessions import SESSION_COOKIE, SessionRecord, SessionStore
from spendstream.people.directory import Directory, Membership, Person
from spendstream.people.lockout import Lockout
from spendstream.people.passwords import Passwords
from spendstream.people.settings import PeopleSettings
from spendstream.people.totp import SecondFactor

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
    access: Access  # the access check every service's routes make

    def set_cookie(self, request: Request, response: Response, session_id: str) -> None:
        """The session cookie: out of scripts' reach, not sent on cross-site subrequests, Secure over TLS."""
        attributes = [
            f"{SESSION_COOKIE}={session_id}",
            "HttpOnly",
            "SameSite=Lax",
            "Path=/",
            f"Max-Age={int(self.settings.session_absolute_seconds)}",
        ]
        if over_https(request):
            attributes.append("Secure")
        response.headers.append("set-cookie", "; ".join(attributes))

    def clear_cookie(self, request: Request, response: Response) -> None:
        attributes = [f"{SESSION_COOKIE}=", "HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=0"]
        if over_https(request):
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
    """A FastAPI dependency for a member's own routes: the access check every route makes (`Access.require`:
    a live session whose role allows `action`, and on a state-changing request its CSRF token, else 403
    {"error": "csrf"}), then the caller as people knows them. A key is refused (403): these routes are a
    person's own, reached by their session only. A membership people holds removed ends the session (401)."""

    async def dependency(request: Request, caller: Annotated[Caller, Depends(ctx.access.require(action))]) -> Me:
        session_id = request.cookies.get(SESSION_COOKIE)
        if caller.kind != "member" or caller.member_id is None or not session_id:
            raise HTTPException(
                403, detail={"error": "forbidden", "message": "a person's own routes are reached by their session only"}
            )
        session = await ctx.sessions.get(session_id)
        membership = await ctx.directory.member(caller.member_id)
        person = await ctx.directory.person(membership.person_id) if membership is not None else None
        if membership is None or person is None:
            raise HTTPException(404, detail={"error": "unknown_member", "message": "people keeps no such member"})
        if session is None or membership.status != "active" or membership.workspace_id != caller.workspace_id:
            # Removed meanwhile (the replayed table may be a moment behind people's own store): the session ends.
            await ctx.sessions.revoke(session_id)
            raise HTTPException(401, detail=UNAUTHORIZED)
        return Me(session_id, session, membership, person, caller.request_id)

    return dependency
