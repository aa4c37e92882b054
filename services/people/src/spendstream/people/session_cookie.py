"""Starting a member's browser session: a fresh id (any session the browser came with is revoked first, so a
session id fixed before sign-in is useless after it) in a cookie that scripts cannot read."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from spendstream.common.sessions import SESSION_COOKIE, SessionStore
from spendstream.people.directory import Membership


def set_session_cookie(response: Response, request: Request, session_id: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        httponly=True,
        samesite="lax",
        path="/",
        # Secure whenever the browser reached us over TLS: it then never sends the id over plain HTTP.
        secure=request.url.scheme == "https",
    )


async def start_session(
    sessions: SessionStore, request: Request, response: Response, membership: Membership, method: str
) -> dict[str, Any]:
    """Rotate to a new session of `membership` and answer like `POST /v1/auth/signin`."""
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:
        await sessions.revoke(previous)
    session_id, _ = await sessions.create(membership.member_id, membership.workspace_id, method)
    set_session_cookie(response, request, session_id)
    return {
        "member_id": membership.member_id,
        "workspace_id": membership.workspace_id,
        "role": membership.role,
        "csrf_token": sessions.csrf_token(session_id),
    }
