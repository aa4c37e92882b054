"""GET /v1/auth/oidc/start and /v1/auth/oidc/callback: single sign-on at the installation's OpenID provider; and
GET /v1/auth/methods, which tells a sign-in page whether to offer it.

Only persons already invited sign on: the provider vouches for a verified e-mail, people maps it to a person with
an active membership (no self-sign-up). Success is audited, then the session is created and its cookie set as
password sign-in sets it; every refusal is audited with its code and answers `{"error", "message"}`. No audit
record, log line or answer carries the e-mail, the code or a token.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass
from typing import Annotated

from fastapi import APIRouter, Cookie, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel

from spendstream.common.audit import AuditUnavailable
from spendstream.common.clients import client_address, over_https
from spendstream.common.errors import responses
from spendstream.common.records import AuditOutcome
from spendstream.common.sessions import SESSION_COOKIE
from spendstream.people.directory import Directory, Membership
from spendstream.people.oidc import FLOW_COOKIE, FLOW_COOKIE_PATH, PROVIDER_ERRORS, FlowCookie, OidcClient, OidcError
from spendstream.people.web import NO_STORE, SignIn

log = logging.getLogger("spendstream.people.oidc")

# The audit action of a single sign-on attempt (a people action, like "signin.password").
ACTION = "signin.oidc"


class AuthMethods(BaseModel):
    """How a person may sign in on this installation."""

    password: bool  # e-mail and password (always on)
    sso: bool  # single sign-on at the installation's OpenID provider, from GET /v1/auth/oidc/start


@dataclass(frozen=True)
class SignOn:
    """What the routes need: password sign-in's wiring (directory, sessions, audit, the session cookie) and the
    provider; `client` is None when the installation configures none."""

    signin: SignIn
    client: OidcClient | None
    cookie: FlowCookie


def _error(code: str, message: str, status: int) -> JSONResponse:
    headers = {"Retry-After": "5"} if status == 503 else None
    response = JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)
    # A failed attempt is over: the browser starts again with a fresh state.
    response.delete_cookie(FLOW_COOKIE, path=FLOW_COOKIE_PATH)
    return response


def oidc_router(deps: SignOn) -> APIRouter:
    router = APIRouter(tags=["sign-in"])
    ctx = deps.signin
    not_configured = (
        "sso_not_configured",
        "single sign-on is not configured on this installation (SPENDSTREAM_OIDC_*)",
        404,
    )

    async def audit(request: Request, outcome: AuditOutcome, membership: Membership | None, reason: str = "") -> None:
        # As password sign-in records its own: the member as actor on success, anonymous otherwise.
        await ctx.audit.record(
            workspace_id=membership.workspace_id if membership else "",
            actor_kind="member" if membership else "anonymous",
            actor_id=membership.member_id if membership else "anonymous",
            action=ACTION,
            outcome=outcome,
            target=membership.member_id if membership else "",
            request_id=request.headers.get("x-request-id", "")[:64],
            client_address=client_address(request),
            detail={"reason": reason} if reason else {},
        )

    async def refuse(request: Request, error: OidcError) -> Response:
        log.info("single sign-on refused: %s", error.code)
        try:
            await audit(request, "failure", None, error.code)
        except AuditUnavailable:
            return _error("audit_unavailable", "the audit log cannot record the sign-in now; retry shortly", 503)
        return _error(error.code, error.message, error.status)

    @router.get("/v1/auth/methods", response_model=AuthMethods, summary="How a person may sign in here")
    async def methods() -> AuthMethods:
        """Unauthenticated, like signing in itself: the sign-in page asks before anyone is signed in. It tells
        only whether single sign-on is configured, never the provider or its settings."""
        return AuthMethods(password=True, sso=deps.client is not None)

    @router.get(
        "/v1/auth/oidc/start",
        status_code=302,
        response_class=RedirectResponse,
        responses={
            302: {"description": "to the identity provider's authorization endpoint"},
            **responses(
                404, 422, 502, s404="`sso_not_configured`", s502="`provider_unavailable`, `provider_misconfigured`"
            ),
        },
    )
    async def start(
        request: Request,
        workspace_id: str | None = Query(
            default=None,
            pattern=r"^[A-Za-z0-9_-]{1,64}$",
            description="the workspace to sign in to, for a person who is a member of several",
        ),
    ) -> Response:
        """Begin single sign-on: a new state, nonce and PKCE verifier bound to this browser, then the provider."""
        if deps.client is None:
            return _error(*not_configured)
        flow = deps.cookie.new(workspace_id)
        try:
            location = await deps.client.authorization_url(flow)
        except OidcError as error:
            return _error(error.code, error.message, error.status)
        response = RedirectResponse(location, status_code=302)
        response.set_cookie(
            FLOW_COOKIE,
            deps.cookie.encode(flow),
            max_age=deps.cookie.seconds,
            httponly=True,
            samesite="lax",  # sent on the provider's top-level redirect back to the callback
            path=FLOW_COOKIE_PATH,
            secure=over_https(request),
        )
        return response

    @router.get(
        "/v1/auth/oidc/callback",
        status_code=302,
        response_class=RedirectResponse,
        responses={
            302: {"description": "signed in: the session cookie is set, on to `/`"},
            **responses(
                400,
                403,
                404,
                422,
                502,
                503,
                s400="the attempt is not this browser's or the provider refused it: `oidc_flow_missing`, "
                "`oidc_state_mismatch`, `oidc_issuer_mismatch`, `oidc_code_missing`, `oidc_code_rejected`, "
                "`provider_error`, `id_token_nonce_mismatch`, `id_token_wrong_audience`, `id_token_expired`",
                s403="`email_not_verified`, `email_domain_not_allowed`, `not_invited`, `email_missing`",
                s404="`sso_not_configured`",
                s502="`provider_unavailable`, `provider_misconfigured`, `id_token_invalid_signature`, "
                "`id_token_wrong_issuer`, `id_token_invalid`",
            ),
        },
    )
    async def callback(
        request: Request,
        state: str | None = Query(default=None, max_length=512),
        code: str | None = Query(default=None, max_length=2048),
        error: str | None = Query(default=None, max_length=128),
        iss: str | None = Query(default=None, max_length=512),
        ss_session: Annotated[str | None, Cookie(alias=SESSION_COOKIE)] = None,
    ) -> Response:
        """Finish single sign-on: this browser's state, the code exchanged, the ID token validated, the e-mail
        mapped to an invited member; then the session."""
        if deps.client is None:
            return _error(*not_configured)
        if ss_session:
            # As at password sign-in: a session id that came with a sign-in attempt is never used again.
            await ctx.sessions.revoke(ss_session)
        try:
            flow = deps.cookie.decode(request.cookies.get(FLOW_COOKIE))
            if state is None or not hmac.compare_digest(state.encode(), flow.state.encode()):
                raise OidcError(
                    "oidc_state_mismatch", "the answer does not belong to this browser's sign-in attempt: start again"
                )
            if iss is not None and iss != deps.client.issuer:
                # RFC 9207: the answer names the provider that sent it; another one's is a mix-up attack.
                raise OidcError("oidc_issuer_mismatch", "the answer comes from another identity provider")
            if error is not None:
                reason = error if error in PROVIDER_ERRORS else "other"
                raise OidcError("provider_error", f"the identity provider ended the sign-in ({reason})")
            if not code:
                raise OidcError("oidc_code_missing", "the identity provider's answer carries no authorization code")
            identity = await deps.client.sign_in(code, flow)
            if not identity.email_verified:
                raise OidcError(
                    "email_not_verified", "the identity provider has not verified this account's e-mail address", 403
                )
            domains = ctx.settings.oidc_email_domains
            domain = identity.email.rpartition("@")[2].lower()
            if domains and domain not in domains:
                raise OidcError(
                    "email_domain_not_allowed", "this installation accepts single sign-on from other domains only", 403
                )
            membership = await _membership(ctx.directory, identity.email, flow.workspace_id)
        except OidcError as refused:
            return await refuse(request, refused)
        try:
            # Written before the effect: no session exists without its record.
            await audit(request, "success", membership)
        except AuditUnavailable:
            return _error("audit_unavailable", "the audit log cannot record the sign-in now; retry shortly", 503)
        session_id, _ = await ctx.sessions.create(membership.member_id, membership.workspace_id, "oidc")
        response = RedirectResponse("/", status_code=302, headers=NO_STORE)
        response.delete_cookie(FLOW_COOKIE, path=FLOW_COOKIE_PATH)
        ctx.set_cookie(request, response, session_id)
        return response

    return router


async def _membership(directory: Directory, email: str, workspace_id: str | None) -> Membership:
    """The active membership the signed-on person enters; `not_invited` when there is none."""
    not_invited = OidcError(
        "not_invited",
        "no workspace has invited this person: ask an admin of your workspace for an invitation first",
        403,
    )
    person = await directory.person_by_email(email)
    if person is None:
        raise not_invited
    memberships = [m for m in await directory.memberships_of(person.person_id) if m.status == "active"]
    if workspace_id is not None:
        memberships = [m for m in memberships if m.workspace_id == workspace_id]
    if not memberships:
        raise not_invited
    # As password sign-in chooses: the workspace asked for, else the oldest membership.
    return memberships[0]
