"""Signing in and out with e-mail and password (and a second factor when enrolled), and a member's own view.

POST /v1/auth/signin answers the same 401 `invalid_credentials`, after the same argon2id work, for an unknown
e-mail, a wrong password, a person with no password (single sign-on only) and a workspace the person is not a
member of; 401 `totp_required` only once the password was right. Locked accounts and clients get 429 with
Retry-After before anything is checked (`lockout.py`). Every outcome is an audit record (`signin.password`),
published before the answer; when it cannot be, the answer is 503 and no session exists (fail closed). A
session id the browser brought along is revoked: the session after sign-in is always a new one.
"""

# No `from __future__ import annotations`: FastAPI evaluates the Header/Cookie parameters at definition time.

import logging
import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Cookie, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError

from spendstream.common.access import ROLE_ACTIONS
from spendstream.common.audit import AuditUnavailable
from spendstream.common.auth_brake import too_many_failures
from spendstream.common.clients import client_address
from spendstream.common.errors import responses
from spendstream.common.records import AuditActorKind, AuditOutcome, Role
from spendstream.common.sessions import SESSION_COOKIE
from spendstream.people.directory import Membership
from spendstream.people.passwords import check_policy
from spendstream.people.web import AUDIT_UNAVAILABLE, NO_STORE, Me, SignIn, signed_in

log = logging.getLogger(__name__)

INVALID_CREDENTIALS = {"error": "invalid_credentials", "message": "the e-mail or the password is wrong"}
TOTP_REQUIRED = {
    "error": "totp_required",
    "message": "this account needs a current authenticator code (totp_code) or an unused backup code (backup_code)",
}
# A sign-in's password may be longer than a new one may be (it is refused anyway), not unboundedly: each costs
# one argon2id run.
_MAX_SIGNIN_PASSWORD = 1024


class SigninBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=_MAX_SIGNIN_PASSWORD)
    totp_code: str | None = Field(default=None, pattern=r"^[0-9]{6}$")
    backup_code: str | None = Field(default=None, min_length=1, max_length=64)
    workspace_id: str | None = Field(default=None, min_length=1, max_length=128)


class SignedIn(BaseModel):
    member_id: str
    workspace_id: str
    role: Role
    csrf_token: str = Field(description="send back in X-CSRF-Token on every state-changing request")


class MeBody(BaseModel):
    member_id: str
    workspace_id: str
    role: Role
    email: str
    name: str
    totp_enabled: bool
    csrf_token: str
    actions: list[str] = Field(description="what this member's role permits (access.py), for the console")


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=_MAX_SIGNIN_PASSWORD)
    new_password: str = Field(min_length=1, max_length=_MAX_SIGNIN_PASSWORD)


class CsrfBody(BaseModel):
    csrf_token: str = Field(description="the new session's token: every other session of the person has ended")


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def request_id(request: Request) -> str:
    """The caller's X-Request-Id when it has an id's shape (it lands in the audit log), else a new one."""
    given = request.headers.get("x-request-id", "")
    return given if _REQUEST_ID.fullmatch(given) else str(uuid.uuid4())


def locked(wait: int) -> HTTPException:
    """429 for a locked account or client, with the seconds until the lockout ends."""
    status, _, headers = too_many_failures(wait)
    message = "too many failed sign-ins for this account or from this client; retry after Retry-After"
    return HTTPException(status, detail={"error": "too_many_failed_signins", "message": message}, headers=headers)


def _choose(memberships: list[Membership], workspace_id: str | None) -> Membership | None:
    """The membership to sign in to: the one asked for, else the oldest."""
    if workspace_id is not None:
        return next((m for m in memberships if m.workspace_id == workspace_id), None)
    return memberships[0] if memberships else None


def router(ctx: SignIn) -> APIRouter:
    api = APIRouter(tags=["sign-in"])

    async def audit(
        request: Request,
        *,
        action: str,
        outcome: AuditOutcome,
        membership: Membership | None,
        actor_kind: AuditActorKind,
        detail: dict[str, str],
    ) -> None:
        """One audit record of a sign-in or account action; 503 when it cannot be published (fail closed)."""
        try:
            await ctx.audit.record(
                workspace_id=membership.workspace_id if membership else "",
                actor_kind=actor_kind,
                actor_id=membership.member_id if actor_kind == "member" and membership else "anonymous",
                action=action,
                outcome=outcome,
                target=membership.member_id if membership else "",
                request_id=request_id(request),
                client_address=client_address(request),
                detail=detail,
            )
        except AuditUnavailable:
            log.warning("audit record not published; action refused", extra={"action": action})
            raise AUDIT_UNAVAILABLE from None

    async def refuse_signin(
        request: Request, membership: Membership | None, reason: str, detail: dict[str, str]
    ) -> None:
        await audit(
            request,
            action="signin.password",
            outcome="failure",
            membership=membership,
            actor_kind="anonymous",
            detail={"reason": reason, **detail},
        )

    @api.post(
        "/v1/auth/signin",
        response_model=SignedIn,
        responses=responses(
            400,
            401,
            422,
            429,
            503,
            s401="`invalid_credentials` (unknown e-mail or wrong password alike) or `totp_required`",
            s429="too many failed sign-ins for this account or from this client; see `Retry-After`",
        ),
    )
    async def signin(
        body: SigninBody,
        request: Request,
        response: Response,
        ss_session: Annotated[str | None, Cookie(alias=SESSION_COOKIE)] = None,
    ) -> SignedIn:
        """Sign in with e-mail and password (and `totp_code` or `backup_code` when the account has TOTP)."""
        try:
            return await attempt(body, request, response, ss_session)
        except RedisError:
            # Sessions, lockout counters and persons live in Redis: without it nobody is signed in, or let guess.
            log.warning("sign-in refused: Redis unavailable")
            raise HTTPException(
                503,
                detail={"error": "signin_unavailable", "message": "sign-in is unavailable for a moment; retry"},
                headers={"Retry-After": "5"},
            ) from None

    async def attempt(body: SigninBody, request: Request, response: Response, ss_session: str | None) -> SignedIn:
        address = client_address(request)
        if ss_session:
            # Whatever happens next, a session id that came with a sign-in attempt is never used again.
            await ctx.sessions.revoke(ss_session)
        person = await ctx.directory.person_by_email(body.email)
        memberships = await ctx.directory.memberships_of(person.person_id) if person is not None else []
        membership = _choose([m for m in memberships if m.status == "active"], body.workspace_id)
        if wait := await ctx.lockout.wait(body.email, address):
            await refuse_signin(request, membership, "locked", {})
            raise locked(wait)
        # The same argon2id work whether or not the person exists or has a password (a dummy hash otherwise).
        password_ok = await ctx.passwords.verify(person.password_hash if person else None, body.password)
        if person is None or not password_ok or membership is None:
            await ctx.lockout.failed(body.email, address)
            await refuse_signin(request, membership, "invalid_credentials", {})
            raise HTTPException(401, detail=INVALID_CREDENTIALS)
        method = "password"
        if person.totp_secret_sealed is not None:
            factor_ok = False
            if body.totp_code is not None:
                factor_ok, method = await ctx.factor.accept_totp(person, body.totp_code), "password+totp"
            elif body.backup_code is not None:
                factor_ok, method = await ctx.factor.spend_backup_code(person, body.backup_code), "password+backup"
            if not factor_ok:
                if body.totp_code is not None or body.backup_code is not None:
                    await ctx.lockout.failed(body.email, address)  # a wrong code is a guess like a wrong password
                await refuse_signin(request, membership, "totp_required", {"method": method})
                raise HTTPException(401, detail=TOTP_REQUIRED)
        await audit(
            request,
            action="signin.password",
            outcome="success",
            membership=membership,
            actor_kind="member",
            detail={"method": method},
        )
        await ctx.lockout.succeeded(body.email)
        if person.password_hash is not None and ctx.passwords.needs_rehash(person.password_hash):
            # Made with older parameters: re-made now, while the password is at hand.
            await ctx.directory.save_person(
                person.model_copy(update={"password_hash": await ctx.passwords.hash(body.password)})
            )
        session_id, _ = await ctx.sessions.create(membership.member_id, membership.workspace_id, method)
        ctx.set_cookie(request, response, session_id)
        response.headers.update(NO_STORE)
        return SignedIn(
            member_id=membership.member_id,
            workspace_id=membership.workspace_id,
            role=membership.role,
            csrf_token=ctx.sessions.csrf_token(session_id),
        )

    @api.post("/v1/auth/signout", status_code=204, responses=responses(401, 403, 422))
    async def signout(request: Request, me: Annotated[Me, Depends(signed_in(ctx, "account.write"))]) -> Response:
        """End this session (cookie and CSRF token): the id is revoked and the cookie cleared."""
        await ctx.sessions.revoke(me.session_id)
        response = Response(status_code=204)
        ctx.clear_cookie(request, response)
        return response

    @api.get("/v1/me", response_model=MeBody, responses=responses(401, 403, 422))
    async def get_me(me: Annotated[Me, Depends(signed_in(ctx, "account.read"))]) -> MeBody:
        """The signed-in member: ids, role, e-mail and name, whether TOTP is on, and what the role permits."""
        return MeBody(
            member_id=me.membership.member_id,
            workspace_id=me.membership.workspace_id,
            role=me.membership.role,
            email=me.person.email,
            name=me.person.name,
            totp_enabled=me.person.totp_secret_sealed is not None,
            csrf_token=ctx.sessions.csrf_token(me.session_id),
            actions=sorted(ROLE_ACTIONS[me.membership.role]),
        )

    @api.post(
        "/v1/me/password",
        response_model=CsrfBody,
        responses=responses(
            400, 401, 403, 422, 429, 503, s403="`invalid_credentials`: the current password is wrong; or `csrf`"
        ),
    )
    async def change_password(
        body: PasswordChange,
        request: Request,
        response: Response,
        me: Annotated[Me, Depends(signed_in(ctx, "account.write"))],
    ) -> CsrfBody:
        """Change the password: every session of the person ends, this one is replaced by a new one."""
        address = client_address(request)
        if wait := await ctx.lockout.wait(me.person.email, address):
            raise locked(wait)
        # A person bootstrapped by the operator has no password yet: the one-time link they signed in with is the
        # proof, as a reset link would be, and `current_password` is not checked for that first one.
        first_password = me.person.password_hash is None and me.session.method == "link"
        if not first_password and not await ctx.passwords.verify(me.person.password_hash, body.current_password):
            await ctx.lockout.failed(me.person.email, address)
            await audit(
                request,
                action="account.password",
                outcome="failure",
                membership=me.membership,
                actor_kind="member",
                detail={"reason": "invalid_credentials"},
            )
            raise HTTPException(
                403, detail={"error": "invalid_credentials", "message": "the current password is wrong"}
            )
        if violation := check_policy(body.new_password, me.person.email):
            raise HTTPException(
                422,
                detail={
                    "error": "weak_password",
                    "message": violation.message,
                    "field": "body.new_password",
                    "code": violation.code,
                },
            )
        await audit(
            request,
            action="account.password",
            outcome="success",
            membership=me.membership,
            actor_kind="member",
            detail={},
        )
        # set_password_hash ends every session of the person, in every workspace, this one included.
        await ctx.directory.set_password_hash(me.person.person_id, await ctx.passwords.hash(body.new_password))
        session_id, _ = await ctx.sessions.create(me.membership.member_id, me.membership.workspace_id, "password")
        ctx.set_cookie(request, response, session_id)
        response.headers.update(NO_STORE)
        return CsrfBody(csrf_token=ctx.sessions.csrf_token(session_id))

    return api
