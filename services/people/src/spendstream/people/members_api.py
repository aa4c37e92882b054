"""The members, invitations and own-data routes of people; each names the one action `access.py` permits it by.

Managing admins and owners needs `owners.write` besides the route's `members.write` (`access.may_assign`): a
route checks the second action on the caller, for the role the member has and the one they are given. The last
active owner of a workspace cannot be demoted, removed or erased (409 last_owner).
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies' annotations at definition time.

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from spendstream.common.audit import AuditTrail, AuditUnavailable
from spendstream.common.clients import client_address
from spendstream.common.errors import AUTH, responses
from spendstream.common.http_auth import Access, Caller
from spendstream.common.records import AuditOutcome, Role
from spendstream.common.sessions import SessionStore
from spendstream.people.directory import (
    AlreadyMember,
    Directory,
    DirectoryError,
    EmailTaken,
    InvalidEmail,
    LastOwner,
    Membership,
    Person,
    normalise_email,
)
from spendstream.people.invitations import Invitation, Invitations
from spendstream.people.mail import MailSender, MailUnavailable
from spendstream.people.passwords import Passwords, check_policy
from spendstream.people.session_cookie import SetCookie, start_session
from spendstream.people.signin_links import SigninLinks

log = logging.getLogger(__name__)

AUDIT_UNAVAILABLE = HTTPException(
    503,
    detail={"error": "audit_unavailable", "message": "the action's audit record could not be written; nothing changed"},
    headers={"Retry-After": "5"},
)


class MemberView(BaseModel):
    member_id: str
    email: str
    name: str
    role: Role
    status: str
    created_at: datetime


class MemberList(BaseModel):
    members: list[MemberView]


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


class InvitationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=254)
    role: Role


class InvitationCreated(BaseModel):
    invitation_id: str
    expires_at: datetime


class InvitationView(BaseModel):
    invitation_id: str
    email: str
    role: Role
    invited_by: str
    created_at: datetime
    expires_at: datetime


class InvitationList(BaseModel):
    invitations: list[InvitationView]


class Acceptance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=128)
    name: str = Field(min_length=1, max_length=200)
    password: str = Field(min_length=1, max_length=1024)


class SignedIn(BaseModel):
    member_id: str
    workspace_id: str
    role: Role
    csrf_token: str


class MembershipExport(BaseModel):
    member_id: str
    workspace_id: str
    role: Role
    status: str
    created_at: datetime


class PersonalData(BaseModel):
    """Everything people keeps about the person, minus credentials (which are only hashes)."""

    person_id: str
    email: str
    name: str
    created_at: datetime
    password_set: bool
    totp_enabled: bool
    memberships: list[MembershipExport]


@dataclass(frozen=True)
class MembersDeps:
    access: Access
    directory: Directory
    invitations: Invitations
    links: SigninLinks
    mail: MailSender
    passwords: Passwords
    sessions: SessionStore
    audit: AuditTrail
    public_url: str
    set_cookie: SetCookie  # sign-in's (`web.SignIn.set_cookie`): one cookie, one set of attributes
    clear_cookie: Callable[[Request, Response], None]


def _error(status: int, error: str, message: str) -> HTTPException:
    return HTTPException(status, detail={"error": error, "message": message})


def _refused(exc: DirectoryError) -> HTTPException:
    if isinstance(exc, LastOwner | AlreadyMember | EmailTaken):
        return _error(409, exc.code, str(exc))
    return _error(422, exc.code, str(exc))


def _documented(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """`errors.responses`, where a 401 is a refused link or password (no `WWW-Authenticate`: no key is asked)."""
    out = responses(*statuses, **descriptions)
    if 401 in out:
        out[401] = {key: value for key, value in out[401].items() if key != "headers"}
    return out


_RETRY = {"Retry-After": "30"}


def _may_assign(caller: Caller, role: Role) -> bool:
    """`access.may_assign` for any caller: a member's role or a key's (capped) scope."""
    return caller.can("owners.write") if role in ("owner", "admin") else caller.can("members.write")


def invitation_link(public_url: str, token: str) -> str:
    # In the fragment: a browser never sends it to a server, so no access log or Referer carries the token.
    return f"{public_url.rstrip('/')}/invite#token={token}"


def signin_link(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/v1/auth/link?token={token}"


def build_router(deps: MembersDeps) -> APIRouter:
    router = APIRouter(tags=["members"])
    directory = deps.directory

    async def view(membership: Membership) -> MemberView:
        person = await directory.person(membership.person_id)
        return MemberView(
            member_id=membership.member_id,
            email=person.email if person else "",
            name=person.name if person else "",
            role=membership.role,
            status=membership.status,
            created_at=membership.created_at,
        )

    async def target_of(caller: Caller, member_id: str) -> Membership:
        membership = await directory.member(member_id)
        # Another workspace's member is as unknown as no member: nothing tells the caller it exists.
        if membership is None or membership.workspace_id != caller.workspace_id or membership.status == "removed":
            raise _error(404, "unknown_member", "no such member in this workspace")
        return membership

    async def audited(
        request: Request,
        *,
        workspace_id: str,
        actor_kind: Any,
        actor_id: str,
        action: str,
        outcome: AuditOutcome,
        target: str = "",
    ) -> None:
        """A record written by the route itself (routes without a caller, or reads that are audited); 503 when it
        cannot be published and the action is not taken."""
        try:
            await deps.audit.record(
                workspace_id=workspace_id,
                actor_kind=actor_kind,
                actor_id=actor_id,
                action=action,
                outcome=outcome,
                target=target,
                request_id=request.headers.get("x-request-id", ""),
                client_address=client_address(request),
            )
        except AuditUnavailable:
            raise AUDIT_UNAVAILABLE from None

    @router.get("/v1/members", response_model=MemberList, responses=responses(*AUTH, 422))
    async def list_members(caller: Annotated[Caller, Depends(deps.access.require("members.read"))]) -> MemberList:
        """The workspace's active members with their e-mail, name and role."""
        return MemberList(members=[await view(m) for m in await directory.members_of(caller.workspace_id)])

    @router.patch(
        "/v1/members/{member_id}",
        response_model=MemberView,
        responses=responses(*AUTH, 400, 404, 409, 422, 503, s409="`last_owner`: the workspace's last owner"),
    )
    async def change_role(
        member_id: str,
        body: RoleChange,
        caller: Annotated[Caller, Depends(deps.access.require("members.write"))],
    ) -> MemberView:
        """Give a member another role; admins and owners are made and unmade by owners only."""
        target = await target_of(caller, member_id)
        if not (_may_assign(caller, target.role) and _may_assign(caller, body.role)):
            raise _error(403, "forbidden", "only an owner makes, demotes or removes admins and owners")
        try:
            return await view(await directory.change_role(member_id, body.role))
        except DirectoryError as exc:
            raise _refused(exc) from None

    @router.delete(
        "/v1/members/{member_id}",
        status_code=204,
        responses=responses(*AUTH, 404, 409, 422, 503, s409="`last_owner`: the workspace's last owner"),
    )
    async def remove_member(
        member_id: str,
        caller: Annotated[Caller, Depends(deps.access.require("members.write"))],
        erase: Annotated[bool, Query(description="also erase the person's e-mail, name and credentials")] = False,
    ) -> Response:
        """End a membership: the member's sessions end, keys they issued stop working; with `erase=true` the
        person's personal data is erased too unless they still belong to another workspace."""
        target = await target_of(caller, member_id)
        if not _may_assign(caller, target.role):
            raise _error(403, "forbidden", "only an owner makes, demotes or removes admins and owners")
        person = await directory.person(target.person_id)
        try:
            await directory.remove_member(member_id)
            if erase and person is not None:
                await deps.invitations.erase_email(caller.workspace_id, person.email)
                if not await directory.memberships_of(person.person_id):
                    await directory.erase_person(person.person_id)
        except DirectoryError as exc:
            raise _refused(exc) from None
        return Response(status_code=204)

    @router.post(
        "/v1/invitations",
        status_code=201,
        response_model=InvitationCreated,
        responses=responses(
            *AUTH,
            400,
            409,
            422,
            503,
            s409="`already_member`",
            s503="`smtp_not_configured`, `mail_unavailable` or `audit_unavailable`: nothing was kept",
        ),
    )
    async def invite(
        body: InvitationRequest,
        caller: Annotated[Caller, Depends(deps.access.require("members.write"))],
    ) -> InvitationCreated:
        """Invite an e-mail address with a role: a single-use link, valid 72 hours, sent by e-mail."""
        if not _may_assign(caller, body.role):
            raise _error(403, "forbidden", "only an owner invites admins and owners")
        try:
            email = normalise_email(body.email)
        except InvalidEmail as exc:
            raise _refused(exc) from None
        person = await directory.person_by_email(email)
        if person is not None and any(
            m.workspace_id == caller.workspace_id for m in await directory.memberships_of(person.person_id)
        ):
            raise _error(409, "already_member", "this address is already a member of the workspace")
        if not deps.mail.configured:
            raise HTTPException(
                503,
                detail={
                    "error": "smtp_not_configured",
                    "message": "invitations go out by e-mail; no SMTP is configured",
                },
                headers=_RETRY,
            )
        invitation, token = await deps.invitations.create(caller.workspace_id, email, body.role, caller.actor_id)
        text = (
            f"You are invited to a spendstream workspace as {body.role}.\n\n"
            f"Accept within {_hours(invitation)} hours (the link works once):\n"
            f"{invitation_link(deps.public_url, token)}\n\n"
            "If you did not expect this invitation, ignore this message.\n"
        )
        try:
            await deps.mail.send(email, "Your invitation to spendstream", text)
        except MailUnavailable as exc:
            await deps.invitations.revoke(caller.workspace_id, invitation.invitation_id)
            log.warning("invitation e-mail not sent", extra={"reason": str(exc)})
            raise HTTPException(
                503,
                detail={
                    "error": "mail_unavailable",
                    "message": "the invitation e-mail could not be sent; nothing kept",
                },
                headers=_RETRY,
            ) from None
        return InvitationCreated(invitation_id=invitation.invitation_id, expires_at=invitation.expires_at)

    @router.get("/v1/invitations", response_model=InvitationList, responses=responses(*AUTH, 422))
    async def list_invitations(
        caller: Annotated[Caller, Depends(deps.access.require("members.read"))],
    ) -> InvitationList:
        """Pending invitations (not accepted, revoked or expired)."""
        pending = await deps.invitations.pending(caller.workspace_id)
        return InvitationList(
            invitations=[InvitationView.model_validate(i.model_dump(exclude={"token_hash"})) for i in pending]
        )

    @router.delete("/v1/invitations/{invitation_id}", status_code=204, responses=responses(*AUTH, 404, 422, 503))
    async def revoke_invitation(
        invitation_id: str,
        caller: Annotated[Caller, Depends(deps.access.require("members.write"))],
    ) -> Response:
        """Revoke a pending invitation: its link stops working."""
        invitation = await deps.invitations.get(caller.workspace_id, invitation_id)
        if invitation is None:
            raise _error(404, "unknown_invitation", "no such pending invitation in this workspace")
        if not _may_assign(caller, invitation.role):
            raise _error(403, "forbidden", "only an owner revokes invitations of admins and owners")
        await deps.invitations.revoke(caller.workspace_id, invitation_id)
        return Response(status_code=204)

    @router.post(
        "/v1/invitations/accept",
        response_model=SignedIn,
        responses=_documented(
            400,
            401,
            409,
            410,
            422,
            503,
            s401="`invalid_credentials`: the address has an account and this is not its password",
            s410="`invitation_invalid`: unknown, used, revoked or expired",
            s422="the request does not match the schema, or `weak_password`",
        ),
    )
    async def accept(body: Acceptance, request: Request, response: Response) -> dict[str, Any]:
        """Accept an invitation (no sign-in needed: the link's token is the proof): a new person sets their name
        and password, a person who already has an account gives their password; either is signed in."""
        invitation = await deps.invitations.peek(body.token)
        if invitation is None:
            raise _error(410, "invitation_invalid", "the invitation link is unknown, used, revoked or expired")
        person = await directory.person_by_email(invitation.email)
        if person is not None and person.password_hash is not None:
            if not await deps.passwords.verify(person.password_hash, body.password):
                raise _error(401, "invalid_credentials", "the password does not match this address's account")
        elif violation := check_policy(body.password, invitation.email):
            raise HTTPException(
                422,
                detail={
                    "error": "weak_password",
                    "message": violation.message,
                    "field": "body.password",
                    "code": violation.code,
                },
            )
        await audited(
            request,
            workspace_id=invitation.workspace_id,
            actor_kind="anonymous",
            actor_id="",
            action="invitations.accept",
            outcome="allowed",
            target=invitation.invitation_id,
        )
        # Taken only now: a wrong password above leaves the link usable.
        if await deps.invitations.take(body.token) is None:
            raise _error(410, "invitation_invalid", "the invitation link is unknown, used, revoked or expired")
        try:
            if person is None:
                person = await directory.create_person(
                    invitation.email, body.name, await deps.passwords.hash(body.password)
                )
            elif person.password_hash is None:
                # The token proves the mailbox, as a password reset link would.
                person = await directory.set_password_hash(person.person_id, await deps.passwords.hash(body.password))
            membership = await directory.add_member(invitation.workspace_id, person.person_id, invitation.role)
        except DirectoryError as exc:
            raise _refused(exc) from None
        return await start_session(deps.sessions, deps.set_cookie, request, response, membership, "invitation")

    @router.get(
        "/v1/auth/link",
        response_class=RedirectResponse,
        status_code=302,
        responses={
            302: {"description": "signed in: the session cookie is set, and the browser goes to `/`"},
            **_documented(401, 422, 503, s401="`invalid_link`: unknown, used or expired"),
        },
    )
    async def follow_link(request: Request, token: Annotated[str, Query(max_length=128)]) -> Response:
        """A one-time sign-in link (the operator's bootstrap of a first owner): signs in once, then 302 to /."""
        found = await deps.links.peek(token)
        membership = await directory.member(found[1]) if found else None
        if found is None or membership is None or membership.status != "active" or membership.workspace_id != found[0]:
            return JSONResponse(
                {"error": "invalid_link", "message": "the sign-in link is unknown, used or expired"}, status_code=401
            )
        await audited(
            request,
            workspace_id=membership.workspace_id,
            actor_kind="member",
            actor_id=membership.member_id,
            action="signin.link",
            outcome="success",
        )
        if await deps.links.take(token) is None:
            return JSONResponse(
                {"error": "invalid_link", "message": "the sign-in link is unknown, used or expired"}, status_code=401
            )
        redirect = RedirectResponse("/", status_code=302)
        await start_session(deps.sessions, deps.set_cookie, request, redirect, membership, "link")
        return redirect

    async def own(caller: Caller) -> tuple[Membership, Person]:
        if caller.kind != "member" or caller.member_id is None:
            raise _error(403, "forbidden", "a person's own data is reached by their signed-in session only")
        membership = await directory.member(caller.member_id)
        person = await directory.person(membership.person_id) if membership else None
        if membership is None or person is None:
            raise _error(404, "unknown_member", "no personal data is kept for this member")
        return membership, person

    @router.get("/v1/me/export", response_model=PersonalData, responses=responses(*AUTH, 404, 422, 503))
    async def export(
        request: Request, caller: Annotated[Caller, Depends(deps.access.require("account.read"))]
    ) -> PersonalData:
        """The signed-in person's own data: e-mail, name and memberships in every workspace."""
        _, person = await own(caller)
        await audited(
            request,
            workspace_id=caller.workspace_id,
            actor_kind="member",
            actor_id=caller.actor_id,
            action="self.export",
            outcome="success",
            target=caller.actor_id,
        )
        memberships = await directory.memberships_of(person.person_id, include_removed=True)
        return PersonalData(
            person_id=person.person_id,
            email=person.email,
            name=person.name,
            created_at=person.created_at,
            password_set=person.password_hash is not None,
            totp_enabled=person.totp_secret_sealed is not None,
            memberships=[MembershipExport.model_validate(m.model_dump()) for m in memberships],
        )

    @router.delete(
        "/v1/me",
        status_code=204,
        responses=responses(*AUTH, 404, 409, 422, 503, s409="`last_owner`: the only owner of a workspace"),
    )
    async def erase_me(
        request: Request, caller: Annotated[Caller, Depends(deps.access.require("account.write"))]
    ) -> Response:
        """Erase the signed-in person: every membership ends and e-mail, name and credentials are deleted; the
        member ids stay (the audit log names them). 409 last_owner while they are a workspace's only owner."""
        _, person = await own(caller)
        try:
            removed = await directory.erase_person(person.person_id)
        except DirectoryError as exc:
            raise _refused(exc) from None
        for membership in removed:
            await deps.invitations.erase_email(membership.workspace_id, person.email)
        response = Response(status_code=204)
        deps.clear_cookie(request, response)
        return response

    return router


def _hours(invitation: Invitation) -> int:
    return max(1, round((invitation.expires_at - invitation.created_at).total_seconds() / 3600))
