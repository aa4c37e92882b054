"""people's own store of persons and memberships, in Redis: the only place e-mails, names and credentials live.

A person (installation-wide: one e-mail, one password) may be a member of several workspaces; each membership
has its own member id, role and status. Every membership change is published as a `MemberRecord` (ids and role,
never an e-mail or a name) on the compacted `people.members.v1`, which every service replays for its access
check. The record is published before the store changes, so no service grants a role people has not announced,
and a removal takes effect everywhere before people forgets it.

Redis layout (`<prefix>` is the installation's `redis_prefix`):
  <prefix>people:person:<person_id>                       Person as JSON (e-mail, name, credentials)
  <prefix>people:email:<hmac(e-mail)>                     person id; the e-mail only as a keyed hash
  <prefix>people:person-members:<person_id>               set of the person's member ids
  <prefix>people:member-at:<member_id>                    the member's workspace id
  <prefix>people:member:{<workspace_id>}:<member_id>      Membership as JSON (ids, role, status)
  <prefix>people:members:{<workspace_id>}                 hash person id -> member id of active memberships
  <prefix>people:lock:{<workspace_id>}                    held while the workspace's memberships change
Membership keys sit under the workspace's hash tag, so a workspace erasure finds them with one SCAN.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from spendstream.common import crypto
from spendstream.common.records import MemberRecord, Role
from spendstream.common.redis_keys import tenant_key
from spendstream.common.sessions import SessionStore

MembershipStatus = Literal["invited", "active", "removed"]
# Publishes one MemberRecord on topics.MEMBERS (key: member id) and waits for the acknowledgement.
PublishMember = Callable[[MemberRecord], Awaitable[None]]
# Publishes a tombstone for a member id on topics.MEMBERS (an erased workspace's memberships).
TombstoneMember = Callable[[str], Awaitable[None]]
_MAX_EMAIL = 254  # RFC 5321's path limit
_MAX_NAME = 200


class DirectoryError(Exception):
    """A membership rule refused the change; `code` is the answer's error code."""

    code = "conflict"


class EmailTaken(DirectoryError):
    code = "email_taken"


class InvalidEmail(DirectoryError):
    code = "invalid_email"


class UnknownPerson(DirectoryError):
    code = "unknown_person"


class UnknownMember(DirectoryError):
    code = "unknown_member"


class AlreadyMember(DirectoryError):
    code = "already_member"


class LastOwner(DirectoryError):
    """The change would leave the workspace without an active owner."""

    code = "last_owner"


class Person(BaseModel):
    """A person as people stores them. Never published, never logged: e-mail, name and credentials."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    person_id: str
    email: str  # normalised (`normalise_email`)
    name: str
    password_hash: str | None = None  # argon2id (PasswordHasher's encoded form); None for SSO-only persons
    # Reserved for sign-in's second factor: the TOTP secret sealed under a KEK-derived key, backup code hashes.
    totp_secret_sealed: str | None = None
    backup_code_hashes: list[str] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime


class Membership(BaseModel):
    """A person's membership of one workspace."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    member_id: str
    workspace_id: str
    person_id: str
    role: Role
    status: MembershipStatus
    created_at: datetime
    updated_at: datetime

    def record(self) -> MemberRecord:
        """What every other service sees of the membership: ids, role and status."""
        return MemberRecord(
            member_id=self.member_id,
            workspace_id=self.workspace_id,
            role=self.role,
            status=self.status,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


def normalise_email(email: str) -> str:
    """The one spelling of an e-mail address people compares and stores: NFKC, trimmed, lower case.

    InvalidEmail for anything that is not `local@domain` within the SMTP length limit."""
    value = unicodedata.normalize("NFKC", email).strip().lower()
    local, at, domain = value.rpartition("@")
    if (
        not at
        or not local
        or "." not in domain.strip(".")
        or len(value) > _MAX_EMAIL
        or any(c.isspace() or ord(c) < 32 for c in value)
    ):
        raise InvalidEmail("an e-mail address is local@domain, at most 254 characters, without spaces")
    return value


def clean_name(name: str) -> str:
    """A display name: trimmed, 1..200 characters, no control characters."""
    value = unicodedata.normalize("NFKC", name).strip()
    if not value or len(value) > _MAX_NAME or any(unicodedata.category(c).startswith("C") for c in value):
        raise DirectoryError("a name is 1 to 200 printable characters")
    return value


def _now() -> datetime:
    return datetime.now(UTC)


def _text(raw: Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


class Directory:
    """Persons and memberships in Redis; membership changes published on `people.members.v1`."""

    def __init__(
        self,
        *,
        redis: aioredis.Redis,
        redis_prefix: str,
        kek: bytes,
        publish: PublishMember,
        sessions: SessionStore,
        tombstone: TombstoneMember | None = None,
    ) -> None:
        self._redis = redis
        self._prefix = redis_prefix
        self._publish = publish
        self._tombstone = tombstone
        self._sessions = sessions
        self._email_key = crypto.derived_key(kek, "people-email-index")

    # -- key names -------------------------------------------------------------------------------------------

    def _person_key(self, person_id: str) -> str:
        return f"{self._prefix}people:person:{person_id}"

    def _email_index(self, email: str) -> str:
        digest = hmac.new(self._email_key, email.encode(), hashlib.sha256).hexdigest()
        return f"{self._prefix}people:email:{digest}"

    def _person_members_key(self, person_id: str) -> str:
        return f"{self._prefix}people:person-members:{person_id}"

    def _member_at_key(self, member_id: str) -> str:
        return f"{self._prefix}people:member-at:{member_id}"

    def _member_key(self, workspace_id: str, member_id: str) -> str:
        return tenant_key(self._prefix, "people", "member", workspace_id, member_id)

    def _active_key(self, workspace_id: str) -> str:
        return tenant_key(self._prefix, "people", "members", workspace_id)

    def _lock(self, workspace_id: str) -> Any:
        # Membership changes of one workspace run one at a time: two owners demoting each other at once must
        # not both pass the last-owner check.
        return self._redis.lock(
            tenant_key(self._prefix, "people", "lock", workspace_id), timeout=10, blocking_timeout=10
        )

    # -- persons ---------------------------------------------------------------------------------------------

    async def create_person(self, email: str, name: str, password_hash: str | None = None) -> Person:
        """A new person; EmailTaken when the (normalised) e-mail already belongs to one."""
        normalised = normalise_email(email)
        now = _now()
        person = Person(
            person_id=f"psn_{secrets.token_hex(12)}",
            email=normalised,
            name=clean_name(name),
            password_hash=password_hash,
            created_at=now,
            updated_at=now,
        )
        # The index first, with NX: of two concurrent sign-ups with one e-mail exactly one wins.
        if not await self._redis.set(self._email_index(normalised), person.person_id, nx=True):
            raise EmailTaken("a person with this e-mail already exists")
        await self._redis.set(self._person_key(person.person_id), person.model_dump_json())
        return person

    async def person(self, person_id: str) -> Person | None:
        raw = await self._redis.get(self._person_key(person_id))
        return None if raw is None else Person.model_validate_json(raw)

    async def person_by_email(self, email: str) -> Person | None:
        """The person of an e-mail in any spelling; None for an unknown or malformed address."""
        try:
            normalised = normalise_email(email)
        except InvalidEmail:
            return None
        person_id = await self._redis.get(self._email_index(normalised))
        return None if person_id is None else await self.person(_text(person_id))

    async def save_person(self, person: Person) -> Person:
        """Store a changed person (e-mail and id unchanged): sign-in's TOTP enrolment and backup codes."""
        current = await self._require_person(person.person_id)
        if person.email != current.email:
            raise DirectoryError("a person's e-mail is not changed by saving")
        updated = person.model_copy(update={"updated_at": _now()})
        await self._redis.set(self._person_key(person.person_id), updated.model_dump_json())
        return updated

    async def set_password_hash(self, person_id: str, password_hash: str) -> Person:
        """A new password hash; the person's sessions in every workspace end (a changed password logs out)."""
        person = await self._require_person(person_id)
        updated = person.model_copy(update={"password_hash": password_hash, "updated_at": _now()})
        await self._redis.set(self._person_key(person_id), updated.model_dump_json())
        for membership in await self.memberships_of(person_id):
            await self._sessions.revoke_member(membership.workspace_id, membership.member_id)
        return updated

    async def set_name(self, person_id: str, name: str) -> Person:
        person = await self._require_person(person_id)
        updated = person.model_copy(update={"name": clean_name(name), "updated_at": _now()})
        await self._redis.set(self._person_key(person_id), updated.model_dump_json())
        return updated

    async def _require_person(self, person_id: str) -> Person:
        person = await self.person(person_id)
        if person is None:
            raise UnknownPerson("no such person")
        return person

    # -- memberships -----------------------------------------------------------------------------------------

    async def member(self, member_id: str) -> Membership | None:
        """The membership of a member id, in whatever state (removed memberships keep their id)."""
        workspace_id = await self._redis.get(self._member_at_key(member_id))
        if workspace_id is None:
            return None
        raw = await self._redis.get(self._member_key(_text(workspace_id), member_id))
        return None if raw is None else Membership.model_validate_json(raw)

    async def memberships_of(self, person_id: str, *, include_removed: bool = False) -> list[Membership]:
        """The person's memberships, active ones only unless asked, oldest first."""
        found: list[Membership] = []
        for raw_id in await self._redis.smembers(self._person_members_key(person_id)):
            membership = await self.member(_text(raw_id))
            if membership is not None and (include_removed or membership.status != "removed"):
                found.append(membership)
        return sorted(found, key=lambda m: (m.created_at, m.member_id))

    async def members_of(self, workspace_id: str) -> list[Membership]:
        """The workspace's active members, oldest first."""
        ids = await self._redis.hvals(self._active_key(workspace_id))
        found: list[Membership] = []
        for raw_id in ids:
            raw = await self._redis.get(self._member_key(workspace_id, _text(raw_id)))
            if raw is not None:
                found.append(Membership.model_validate_json(raw))
        return sorted(found, key=lambda m: (m.created_at, m.member_id))

    async def add_member(self, workspace_id: str, person_id: str, role: Role) -> Membership:
        """Make the person an active member of the workspace; AlreadyMember when they are one.

        A person removed earlier comes back under a new member id: what the old id was granted stays ended."""
        await self._require_person(person_id)
        async with self._lock(workspace_id):
            if await self._redis.hexists(self._active_key(workspace_id), person_id):
                raise AlreadyMember("the person is already a member of this workspace")
            now = _now()
            membership = Membership(
                member_id=f"mem_{secrets.token_hex(12)}",
                workspace_id=workspace_id,
                person_id=person_id,
                role=role,
                status="active",
                created_at=now,
                updated_at=now,
            )
            await self._publish(membership.record())
            await self._redis.set(self._member_at_key(membership.member_id), workspace_id)
            await self._redis.set(self._member_key(workspace_id, membership.member_id), membership.model_dump_json())
            await self._redis.sadd(self._person_members_key(person_id), membership.member_id)
            await self._redis.hset(self._active_key(workspace_id), person_id, membership.member_id)
            return membership

    async def change_role(self, member_id: str, role: Role) -> Membership:
        """Give an active member another role; LastOwner when it would demote the workspace's last owner.

        Who may assign which role is the caller's check (`access.may_assign`); this keeps the invariant."""
        current = await self._require_active(member_id)
        async with self._lock(current.workspace_id):
            current = await self._require_active(member_id)
            if current.role == role:
                return current
            if current.role == "owner":
                await self._refuse_last_owner(current)
            updated = current.model_copy(update={"role": role, "updated_at": _now()})
            await self._publish(updated.record())
            await self._redis.set(self._member_key(updated.workspace_id, member_id), updated.model_dump_json())
            return updated

    async def remove_member(self, member_id: str) -> Membership:
        """End a membership: published as `removed` (every service's access check drops the member and the keys
        they issued), then the member's sessions are revoked. LastOwner for the workspace's last owner.

        The member id stays, with status `removed`, so audit records and issued keys still name it."""
        current = await self._require_active(member_id)
        async with self._lock(current.workspace_id):
            current = await self._require_active(member_id)
            if current.role == "owner":
                await self._refuse_last_owner(current)
            return await self._remove(current)

    async def _remove(self, current: Membership) -> Membership:
        updated = current.model_copy(update={"status": "removed", "updated_at": _now()})
        await self._publish(updated.record())
        await self._redis.set(self._member_key(updated.workspace_id, updated.member_id), updated.model_dump_json())
        await self._redis.hdel(self._active_key(updated.workspace_id), updated.person_id)
        await self._sessions.revoke_member(updated.workspace_id, updated.member_id)
        return updated

    async def _require_active(self, member_id: str) -> Membership:
        membership = await self.member(member_id)
        if membership is None or membership.status == "removed":
            raise UnknownMember("no such member")
        return membership

    async def _refuse_last_owner(self, owner: Membership) -> None:
        others = [
            m
            for m in await self.members_of(owner.workspace_id)
            if m.role == "owner" and m.status == "active" and m.member_id != owner.member_id
        ]
        if not others:
            raise LastOwner("the last owner of a workspace cannot leave or be demoted")

    async def sole_owner_of(self, person_id: str) -> list[str]:
        """The workspaces in which the person is the only active owner (they cannot leave those)."""
        sole: list[str] = []
        for membership in await self.memberships_of(person_id):
            if membership.role != "owner":
                continue
            owners = [m for m in await self.members_of(membership.workspace_id) if m.role == "owner"]
            if len(owners) == 1:
                sole.append(membership.workspace_id)
        return sole

    # -- erasure ---------------------------------------------------------------------------------------------

    async def erase_person(self, person_id: str, *, force: bool = False) -> list[Membership]:
        """Erase a person: every active membership removed (published, sessions revoked), then the e-mail, name
        and credentials deleted from Redis. Member ids stay (status `removed`) so the audit log keeps its actors.

        LastOwner when the person is a workspace's last owner, unless `force` (the workspace itself is being
        erased). A repeated erasure finds nothing and returns no membership."""
        if not force:
            sole = await self.sole_owner_of(person_id)
            if sole:
                raise LastOwner("the last owner of a workspace cannot leave or be demoted")
        removed: list[Membership] = []
        for membership in await self.memberships_of(person_id):
            async with self._lock(membership.workspace_id):
                current = await self.member(membership.member_id)
                if current is not None and current.status != "removed":
                    removed.append(await self._remove(current))
        person = await self.person(person_id)
        if person is not None:
            await self._redis.delete(self._email_index(person.email), self._person_key(person_id))
        return removed

    async def erase_workspace(self, workspace_id: str) -> tuple[int, int]:
        """Forget every membership of an erased workspace: (memberships, persons erased).

        Memberships are published as `removed` (then tombstoned, when the directory was given a `tombstone`) and
        deleted from Redis with their sessions; a person left with no
        membership anywhere is erased entirely, one still a member elsewhere keeps their person record."""
        memberships: list[Membership] = []
        async for key in self._redis.scan_iter(
            match=tenant_key(self._prefix, "people", "member", workspace_id, "*"), count=500
        ):
            raw = await self._redis.get(key)
            if raw is not None:
                memberships.append(Membership.model_validate_json(raw))
        persons = 0
        for membership in memberships:
            if membership.status != "removed":
                await self._remove(membership)
            if self._tombstone is not None:
                await self._tombstone(membership.member_id)
            await self._sessions.revoke_member(workspace_id, membership.member_id)
            await self._redis.srem(self._person_members_key(membership.person_id), membership.member_id)
            await self._redis.delete(
                self._member_at_key(membership.member_id), self._member_key(workspace_id, membership.member_id)
            )
            if not await self._redis.scard(self._person_members_key(membership.person_id)):
                person = await self.person(membership.person_id)
                if person is not None:
                    await self._redis.delete(
                        self._email_index(person.email),
                        self._person_key(person.person_id),
                        self._person_members_key(person.person_id),
                    )
                    persons += 1
        await self._redis.delete(self._active_key(workspace_id))
        return len(memberships), persons
