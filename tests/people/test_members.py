"""Members and roles: who may list, promote, demote and remove whom, and the last owner who cannot go."""

from __future__ import annotations

import pytest

from spendstream.common.records import MemberRecord
from spendstream.common.topics import MEMBERS, topic_name
from tests.ingest.topics import read_all
from tests.people.world import people_service, session_from
from tests.support import Isolation, create_workspace, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_the_operator_bootstraps_an_owner_with_a_link_that_signs_in_once(iso: Isolation) -> None:
    ws = (await create_workspace(iso))["workspace_id"]
    async with people_service(iso) as p:
        owner = await p.operator_adds(ws, "Founder@Example.com")
        assert (owner.workspace_id, owner.role) == (ws, "owner")
        members = await p.members(owner)
        assert [(m["email"], m["role"], m["status"]) for m in members.values()] == [
            ("founder@example.com", "owner", "active")
        ]


async def test_an_admin_manages_members_below_owner_and_only_an_owner_makes_admins(iso: Isolation) -> None:
    ws = (await create_workspace(iso))["workspace_id"]
    async with people_service(iso) as p:
        owner = await p.operator_adds(ws, "owner@example.com")
        admin = await p.joins(owner, "admin@example.com", "admin")
        member = await p.joins(admin, "member@example.com", "member")

        # An admin moves a member between viewer and member ...
        demoted = await p.client.patch(
            f"/v1/members/{member.member_id}", json={"role": "viewer"}, headers=admin.headers()
        )
        assert demoted.status_code == 200 and demoted.json()["role"] == "viewer", demoted.text
        # ... but neither makes an admin nor touches an owner.
        for target, role in ((member.member_id, "admin"), (owner.member_id, "member"), (member.member_id, "owner")):
            refused = await p.client.patch(f"/v1/members/{target}", json={"role": role}, headers=admin.headers())
            assert refused.status_code == 403, refused.text
        assert (await p.client.delete(f"/v1/members/{owner.member_id}", headers=admin.headers())).status_code == 403
        refused_invite = await p.client.post(
            "/v1/invitations", json={"email": "x@example.com", "role": "admin"}, headers=admin.headers()
        )
        assert refused_invite.status_code == 403
        # The owner may.
        promoted = await p.client.patch(
            f"/v1/members/{member.member_id}", json={"role": "admin"}, headers=owner.headers()
        )
        assert promoted.status_code == 200 and promoted.json()["role"] == "admin"
        roles = {m["email"]: m["role"] for m in (await p.members(owner)).values()}
        assert roles == {"owner@example.com": "owner", "admin@example.com": "admin", "member@example.com": "admin"}


async def test_a_viewer_and_a_member_neither_list_nor_manage_members(iso: Isolation) -> None:
    ws = (await create_workspace(iso))["workspace_id"]
    async with people_service(iso) as p:
        owner = await p.operator_adds(ws, "owner@example.com")
        for role in ("viewer", "member"):
            caller = await p.joins(owner, f"{role}@example.com", role)
            assert (await p.client.get("/v1/members", headers=caller.headers())).status_code == 403
            assert (await p.client.get("/v1/invitations", headers=caller.headers())).status_code == 403
            change = await p.client.patch(
                f"/v1/members/{owner.member_id}", json={"role": "viewer"}, headers=caller.headers()
            )
            assert change.status_code == 403
        assert {m["role"] for m in (await p.members(owner)).values()} == {"owner", "viewer", "member"}


async def test_the_last_owner_can_neither_be_demoted_nor_leave(iso: Isolation) -> None:
    ws = (await create_workspace(iso))["workspace_id"]
    async with people_service(iso) as p:
        owner = await p.operator_adds(ws, "owner@example.com")
        demote = await p.client.patch(f"/v1/members/{owner.member_id}", json={"role": "admin"}, headers=owner.headers())
        assert demote.status_code == 409 and demote.json()["error"] == "last_owner"
        leave = await p.client.delete(f"/v1/members/{owner.member_id}", headers=owner.headers())
        assert leave.status_code == 409 and leave.json()["error"] == "last_owner"
        erase = await p.client.delete("/v1/me", headers=owner.headers())
        assert erase.status_code == 409 and erase.json()["error"] == "last_owner"

        # With a second owner, the first may step down.
        second = await p.joins(owner, "second@example.com", "owner")
        stepped_down = await p.client.patch(
            f"/v1/members/{owner.member_id}", json={"role": "admin"}, headers=owner.headers()
        )
        assert stepped_down.status_code == 200, stepped_down.text
        last = await p.client.patch(f"/v1/members/{second.member_id}", json={"role": "admin"}, headers=second.headers())
        assert last.status_code == 409


async def test_a_removed_member_loses_their_sessions_and_every_service_hears_of_it(iso: Isolation) -> None:
    ws = (await create_workspace(iso))["workspace_id"]
    async with people_service(iso) as p:
        owner = await p.operator_adds(ws, "owner@example.com")
        member = await p.joins(owner, "leaving@example.com", "member")
        assert (await p.client.get("/v1/me", headers=member.headers())).status_code == 200

        removed = await p.client.delete(f"/v1/members/{member.member_id}", headers=owner.headers())
        assert removed.status_code == 204, removed.text
        assert (await p.client.get("/v1/me", headers=member.headers())).status_code == 401
        assert member.member_id not in await p.members(owner)
        again = await p.client.delete(f"/v1/members/{member.member_id}", headers=owner.headers())
        assert again.status_code == 404

    async def published() -> list[MemberRecord] | None:
        records = await read_all(iso.stack.kafka, topic_name(MEMBERS, iso.prefix))
        mine = [MEMBERS.record.decode(r.value) for r in records if r.key == member.member_id.encode()]
        return mine if mine and mine[-1].status == "removed" else None

    history = await eventually(published)
    assert [r.status for r in history] == ["active", "removed"]
    assert all(r.workspace_id == ws and r.role == "member" for r in history)


async def test_another_workspaces_member_is_unknown(iso: Isolation) -> None:
    ours, theirs = (
        (await create_workspace(iso, "ours"))["workspace_id"],
        (await create_workspace(iso, "theirs"))["workspace_id"],
    )
    async with people_service(iso) as p:
        owner = await p.operator_adds(ours, "owner@ours.example")
        stranger = await p.operator_adds(theirs, "owner@theirs.example")
        for response in (
            await p.client.patch(f"/v1/members/{stranger.member_id}", json={"role": "viewer"}, headers=owner.headers()),
            await p.client.delete(f"/v1/members/{stranger.member_id}", headers=owner.headers()),
        ):
            assert response.status_code == 404
        assert list(await p.members(owner)) == [owner.member_id]


async def test_the_bootstrapped_owner_sets_a_first_password_then_signs_in_with_it(iso: Isolation) -> None:
    ws = (await create_workspace(iso))["workspace_id"]
    async with people_service(iso) as p:
        owner = await p.operator_adds(ws, "first@example.com")
        new_password = "amber-quarry-41-kites"
        changed = await p.client.post(
            "/v1/me/password",
            json={"current_password": "none-yet", "new_password": new_password},
            headers=owner.headers(),
        )
        assert changed.status_code == 200, changed.text
        p.client.cookies.clear()
        signed_in = await p.client.post(
            "/v1/auth/signin", json={"email": "first@example.com", "password": new_password}
        )
        assert signed_in.status_code == 200, signed_in.text
        assert signed_in.json()["member_id"] == owner.member_id
        p.client.cookies.clear()
        # From now on the current password is asked, as for anyone.
        again = await p.session(session_from(signed_in))
        refused = await p.client.post(
            "/v1/me/password",
            json={"current_password": "none-yet", "new_password": "another-long-phrase-99"},
            headers=again.headers(),
        )
        assert refused.status_code == 403
