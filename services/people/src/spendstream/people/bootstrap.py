"""The operator's way in: make a person a member of a workspace and hand them a one-time sign-in link.

`spendstream member add WORKSPACE EMAIL --role owner` bootstraps a workspace's first owner: there is nobody yet
who could invite them. The link (`/v1/auth/link?token=...`, single use, `signin_link_ttl_seconds`) is mailed
when SMTP is configured, else returned for the CLI to print. The action is audited as the operator's, before it
takes effect (fail closed).
"""

from __future__ import annotations

from dataclasses import dataclass

from spendstream.common.audit import AuditTrail
from spendstream.common.kafka import make_broker
from spendstream.common.records import Role
from spendstream.people.app import build_directory
from spendstream.people.directory import AlreadyMember, normalise_email
from spendstream.people.mail import MailSender
from spendstream.people.members_api import signin_link
from spendstream.people.redis_client import redis_client
from spendstream.people.settings import PeopleSettings
from spendstream.people.signin_links import SigninLinks


@dataclass(frozen=True)
class Added:
    workspace_id: str
    member_id: str
    role: Role
    link: str | None  # None when the link went out by e-mail
    mailed: bool


async def add_member(settings: PeopleSettings, workspace_id: str, email: str, role: Role, name: str = "") -> Added:
    """Add (or find) the person and their membership; a fresh sign-in link either way."""
    address = normalise_email(email)
    broker = make_broker(settings, "cli")
    redis = redis_client(settings)
    await broker.connect()
    try:
        directory = build_directory(settings, redis, broker)
        await AuditTrail(settings, broker, "people").record(
            workspace_id=workspace_id,
            actor_kind="operator",
            actor_id="operator",
            action="members.write",
            outcome="allowed",
            detail={"role": role, "via": "cli"},
        )
        person = await directory.person_by_email(address)
        if person is None:
            person = await directory.create_person(address, name or address.split("@", 1)[0])
        try:
            membership = await directory.add_member(workspace_id, person.person_id, role)
        except AlreadyMember:
            (membership,) = [
                m for m in await directory.memberships_of(person.person_id) if m.workspace_id == workspace_id
            ]
            if membership.role != role:
                membership = await directory.change_role(membership.member_id, role)
        links = SigninLinks(redis, settings.redis_prefix, settings.signin_link_ttl_seconds)
        link = signin_link(settings.link_base, await links.create(workspace_id, membership.member_id))
        mail = MailSender(settings)
        if mail.configured:
            hours = max(1, settings.signin_link_ttl_seconds // 3600)
            await mail.send(
                address,
                "Sign in to spendstream",
                f"You are the {role} of a spendstream workspace.\n\nSign in within {hours} hours (the link works "
                f"once), then set a password:\n{link}\n",
            )
            return Added(workspace_id, membership.member_id, membership.role, None, True)
        return Added(workspace_id, membership.member_id, membership.role, link, False)
    finally:
        await broker.stop()
        await redis.aclose()
