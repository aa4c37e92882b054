"""A member's e-mail and name are personal data: exportable by the person, and erased on request (their own,
an admin's, or the workspace's erasure) from Redis and every topic, while the member id stays for the audit log."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from spendstream.common.erasure import DeletionCommand, DeletionReport, ErasureScope
from spendstream.common.kafka import Publisher, make_broker
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import DELETION_COMMANDS, DELETION_REPORTS, MEMBERS, topic_name
from tests.ingest.topics import read_all, topic_names
from tests.people.world import People, people_service, redis_dump, session_from
from tests.support import Isolation, create_workspace, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def _topics(iso: Isolation) -> bytes:
    """Every record of every topic of the test, replayed from the beginning, as one blob."""
    blob = bytearray()
    for name in await topic_names(iso.stack.kafka, iso.prefix):
        for record in await read_all(iso.stack.kafka, name):
            blob += (record.key or b"") + b"\n" + (record.value or b"") + b"\n"
    return bytes(blob)


async def _nowhere(p: People, *personal: str) -> None:
    stored = (await redis_dump(p.settings)).lower()
    published = (await _topics(p.iso)).lower()
    for value in personal:
        assert value.lower().encode() not in stored, "personal data left in Redis"
        assert value.lower().encode() not in published, "personal data left on a topic"


async def _member_statuses(iso: Isolation, member_id: str) -> list[str | None]:
    records = await read_all(iso.stack.kafka, topic_name(MEMBERS, iso.prefix))
    return [
        MEMBERS.record.decode(r.value).status if r.value is not None else None
        for r in records
        if r.key == member_id.encode()
    ]


async def test_a_person_exports_their_own_data(iso: Isolation) -> None:
    ws = (await create_workspace(iso))["workspace_id"]
    async with people_service(iso) as p:
        owner = await p.operator_adds(ws, "owner@example.com")
        member = await p.joins(owner, "Exporter@Example.com", "viewer")
        response = await p.client.get("/v1/me/export", headers=member.headers())
        assert response.status_code == 200, response.text
        data = response.json()
        assert (data["email"], data["name"], data["password_set"], data["totp_enabled"]) == (
            "exporter@example.com",
            "Invited Person",
            True,
            False,
        )
        assert [(m["member_id"], m["workspace_id"], m["role"]) for m in data["memberships"]] == [
            (member.member_id, ws, "viewer")
        ]
        assert "password_hash" not in response.text and "$argon2" not in response.text
        # A key is nobody's person: no key scope reaches a person's own data.
        keys = await create_workspace(iso, "keys")
        for scope in ("read", "admin"):

            async def answered(key: str = keys[scope]) -> int | None:  # 401 while people replays the new key
                status = (await p.client.get("/v1/me/export", headers={"Authorization": f"Bearer {key}"})).status_code
                return None if status == 401 else status

            assert await eventually(answered) == 403


async def test_a_person_who_erases_themselves_leaves_their_e_mail_nowhere(iso: Isolation) -> None:
    ws = (await create_workspace(iso))["workspace_id"]
    email, name = f"erase-{uuid.uuid4().hex[:8]}@example.com", f"Name {uuid.uuid4().hex[:8]}"
    async with people_service(iso) as p:
        owner = await p.operator_adds(ws, "owner@example.com")
        _, token = await p.invite(owner, email, "member")
        accepted = await p.accept(token, name=name)
        assert accepted.status_code == 200
        member_id = accepted.json()["member_id"]
        member = await p.session(session_from(accepted))
        assert (await p.client.get("/v1/me/export", headers=member.headers())).json()["email"] == email

        erased = await p.client.delete("/v1/me", headers=member.headers())
        assert erased.status_code == 204, erased.text
        assert "Max-Age=0" in erased.headers["set-cookie"]
        assert (await p.client.get("/v1/me", headers=member.headers())).status_code == 401
        assert member_id not in await p.members(owner)
        assert (await p.client.post("/v1/auth/signin", json={"email": email, "password": "x" * 14})).status_code in (
            401,
            429,
        )
        await _nowhere(p, email, name)
        # The member id stays: the audit log's actor, and every service knows it was removed.
        assert await _member_statuses(iso, member_id) == ["active", "removed"]


async def test_an_admin_erases_a_member_who_belongs_nowhere_else(iso: Isolation) -> None:
    ws = (await create_workspace(iso))["workspace_id"]
    async with people_service(iso) as p:
        owner = await p.operator_adds(ws, "owner@example.com")
        member = await p.joins(owner, "gone@example.com", "member")
        # A pending invitation of the same address goes too.
        await p.invite(owner, "pending@example.com", "viewer")
        removed = await p.client.delete(f"/v1/members/{member.member_id}?erase=true", headers=owner.headers())
        assert removed.status_code == 204, removed.text
        await _nowhere(p, "gone@example.com")
        assert b"pending@example.com" in await redis_dump(p.settings)  # another person's, untouched


async def test_the_workspace_erasure_forgets_its_members_and_invitations(iso: Isolation) -> None:
    gone, kept = (
        (await create_workspace(iso, "gone"))["workspace_id"],
        (await create_workspace(iso, "kept"))["workspace_id"],
    )
    async with people_service(iso) as p:
        owner = await p.operator_adds(gone, "only-here@example.com")
        both = await p.joins(owner, "in-both@example.com", "member")
        other_owner = await p.operator_adds(kept, "kept-owner@example.com")
        await p.joins(other_owner, "in-both@example.com", "viewer")
        await p.invite(owner, "invited-here@example.com", "viewer")

        settings = p.iso.settings(BaseServiceSettings)
        broker = make_broker(settings, "tests")
        await broker.connect()
        try:
            command = DeletionCommand(
                request_id=f"req{uuid.uuid4().hex[:12]}",
                scope=ErasureScope(workspace_id=gone),
                issued_at=datetime.now(UTC),
            )
            await Publisher(broker, DELETION_COMMANDS, settings.topic_prefix).publish(command, command.request_id)
        finally:
            await broker.stop()

        async def reported() -> DeletionReport | None:
            for r in await read_all(iso.stack.kafka, topic_name(DELETION_REPORTS, iso.prefix)):
                report = DELETION_REPORTS.record.decode(r.value)
                if report.owner == "people" and report.request_id == command.request_id:
                    return report
            return None

        report = await eventually(reported, timeout=30)
        assert report.status == "done", report
        assert [v.result for v in report.verifications] == [0]
        stored = await redis_dump(p.settings)
        assert f"{{{gone}}}".encode() not in stored
        await _nowhere(p, "only-here@example.com", "invited-here@example.com")
        assert b"in-both@example.com" in stored  # still a member of the other workspace
        assert (await p.client.get("/v1/me", headers=owner.headers())).status_code == 401
        assert (await p.client.get("/v1/me", headers=both.headers())).status_code == 401
        assert [m["email"] for m in (await p.members(other_owner)).values()] == [
            "kept-owner@example.com",
            "in-both@example.com",
        ]
        assert (await _member_statuses(iso, owner.member_id))[-1] is None  # tombstoned
