"""Starting a member's browser session from a link (an accepted invitation, a one-time sign-in link): a fresh
id -- any session the browser came with is revoked first, so a session id fixed beforehand is useless after --
in the cookie sign-in sets (`web.SignIn.set_cookie`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import Request, Response

from spendstream.common.sessions import SESSION_COOKIE, SessionStore
from spendstream.people.directory import Membership

SetCookie = Callable[[Request, Response, str], None]


async def start_session(
    sessions: SessionStore,
    set_cookie: SetCookie,
    request: Request,
    response: Response,
    membership: Membership,
    method: str,
) -> dict[str, Any]:
    """Rotate to a new session of `membership` and answer like `POST /v1/auth/signin`."""
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:
        await sessions.revoke(previous)
    session_id, _ = await sessions.create(membership.member_id, membership.workspace_id, method)
    set_cookie(request, response, session_id)
    return {
        "member_id": membership.member_id,
        "workspace_id": membership.workspace_id,
        "role": membership.role,
        "csrf_token": sessions.csrf_token(session_id),
    }
