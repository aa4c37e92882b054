"""Invitations: an e-mailed, single-use link that expires after 72 hours, whose token lives only in the e-mail."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from spendstream.common.audit import AuditTrail, AuditUnavailable
from spendstream.common.logs import JsonFormatter
from spendstream.people.bootstrap import add_member
from spendstream.people.invitations import Invitation
from tests.people.world import people_service, redis_dump, session_from
from tests.support import Isolation, create_workspace, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    # aiosmtpd's own log ("mail.log") is the recipient's mail server, which reads the message by design.
    handler.addFilter(lambda record: not record.name.startswith("mail.log"))
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(old)


async def test_an_invitation_is_mailed_accepted_once_and_its_token_is_kept_nowhere(
    iso: Isolation, captured_logs: io.StringIO
) -> None:
    ws = (await create_workspace(iso))["workspace_id"]
    async with people_service(iso) as p:
        owner = await p.operator_adds(ws, "owner@example.com")
        invitation_id, token = await p.invite(owner, "New.Person@Example.com", "member")
        message = p.mailbox.messages[-1]
        assert message["To"] == "new.person@example.com" and message["From"] == p.settings.smtp_from

        listed = await p.client.get("/v1/invitations", headers=owner.headers())
        assert [(i["invitation_id"], i["email"], i["role"]) for i in listed.json()["invitations"]] == [
            (invitation_id, "new.person@example.com", "member")
        ]
        assert token not in listed.text and "token" not in listed.text
        assert token.encode() not in await redis_dump(p.settings)  # only its SHA-256 is stored

        accepted = await p.accept(token, name="New Person")
        assert accepted.status_code == 200, accepted.text
        body = accepted.json()
        assert (body["workspace_id"], body["role"]) == (ws, "member") and body["csrf_token"]
        cookie = accepted.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
        joined = await p.session(session_from(accepted))
        assert joined.member_id == body["member_id"]

        twice = await p.accept(token, name="Someone Else")
        assert twice.status_code == 410 and twice.json()["error"] == "invitation_invalid"
        assert (await p.client.get("/v1/invitations", headers=owner.headers())).json()["invitations"] == []
        members = await p.members(owner)
        assert members[joined.member_id]["name"] == "New Person"
        answers = [listed.text, accepted.text, twice.text]
    assert not [a for a in answers if token in a]
    assert token not in captured_logs.getvalue()


async def test_an_invitation_expires_after_72_hours(iso: Isolation) -> None:
    ws = (await create_workspace(iso))["workspace_id"]
    async with people_service(iso) as p:
        owner = await p.operator_adds(ws, "owner@example.com")
        invitation_id, token = await p.invite(owner, "late@example.com", "viewer")
        created = await p.client.get("/v1/invitations", headers=owner.headers())
        (shown,) = created.json()["invitations"]
        lifetime = datetime.fromisoformat(shown["expires_at"]) - datetime.fromisoformat(shown["created_at"])
        assert lifetime == timedelta(hours=72)

        # Redis forgets it at the same moment ...
        redis = aioredis.Redis.from_url(p.settings.redis_url)
        key = f"{p.settings.redis_prefix}people:invitation:{{{ws}}}:{invitation_id}"
        assert 71 * 3600 * 1000 < await redis.pttl(key) <= 72 * 3600 * 1000
        # ... and an invitation whose time has passed is refused even if its key outlived it.
        raw = await redis.get(key)
        assert raw is not None
        stored = Invitation.model_validate_json(raw)
        expired = stored.model_copy(update={"expires_at": datetime.now(UTC) - timedelta(seconds=1)})
        await redis.set(key, expired.model_dump_json(), keepttl=True)
        await redis.aclose()
        refused = await p.accept(token)
        assert refused.status_code == 410
        assert (await p.client.get("/v1/invitations", headers=owner.headers())).json()["invitations"] == []
        assert len(await p.members(owner)) == 1


async def test_a_revoked_invitation_no_longer_opens(iso: Isolation) -> None:
    ws = (await create_workspace(iso))["workspace_id"]
    async with people_service(iso) as p:
        owner = await p.operator_adds(ws, "owner@example.com")
        invitation_id, token = await p.invite(owner, "maybe@example.com", "member")
        revoked = await p.client.delete(f"/v1/invitations/{invitation_id}", headers=owner.headers())
        assert revoked.status_code == 204
        assert (await p.accept(token)).status_code == 410
        assert (await p.client.delete(f"/v1/invitations/{invitation_id}", headers=owner.headers())).status_code == 404


async def test_a_weak_or_wrong_password_leaves_the_link_usable(iso: Isolation) -> None:
    first, second = (
        (await create_workspace(iso, "a"))["workspace_id"],
        (await create_workspace(iso, "b"))["workspace_id"],
    )
    async with people_service(iso) as p:
        owner = await p.operator_adds(first, "owner@example.com")
        _, token = await p.invite(owner, "pat@example.com", "member")
        weak = await p.accept(token, password="password1234")
        assert weak.status_code == 422 and weak.json()["error"] == "weak_password"
        assert "password1234" not in weak.text
        assert (await p.accept(token)).status_code == 200

        # Pat has an account now: an invitation to a second workspace asks for its password, not a new one.
        other_owner = await p.operator_adds(second, "boss@example.com")
        _, token = await p.invite(other_owner, "PAT@example.com", "viewer")
        wrong = await p.accept(token, password="not-pats-password-at-all")
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_credentials"
        accepted = await p.accept(token)
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["workspace_id"] == second


async def test_without_a_reachable_mail_server_nothing_is_kept(iso: Isolation) -> None:
    ws = (await create_workspace(iso))["workspace_id"]
    async with people_service(iso, smtp_port=free_port(), smtp_timeout_seconds=2) as p:
        owner = await p.operator_adds(ws, "owner@example.com")
        response = await p.client.post(
            "/v1/invitations", json={"email": "lost@example.com", "role": "member"}, headers=owner.headers()
        )
        assert response.status_code == 503 and response.json()["error"] == "mail_unavailable"
        assert (await p.client.get("/v1/invitations", headers=owner.headers())).json()["invitations"] == []
    async with people_service(iso, smtp_host="") as p:
        owner = await p.operator_adds(ws, "second-owner@example.com")
        response = await p.client.post(
            "/v1/invitations", json={"email": "lost@example.com", "role": "member"}, headers=owner.headers()
        )
        assert response.status_code == 503 and response.json()["error"] == "smtp_not_configured"


async def test_an_acceptance_whose_audit_record_cannot_be_written_changes_nothing(
    iso: Isolation, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = (await create_workspace(iso))["workspace_id"]
    async with people_service(iso) as p:
        owner = await p.operator_adds(ws, "owner@example.com")
        _, token = await p.invite(owner, "quiet@example.com", "member")

        async def unavailable(self: AuditTrail, **_: object) -> None:
            raise AuditUnavailable("the audit topic is unreachable")

        with monkeypatch.context() as patched:
            patched.setattr(AuditTrail, "record", unavailable)
            refused = await p.accept(token)
            assert refused.status_code == 503 and refused.json()["error"] == "audit_unavailable"
            change = await p.client.patch(
                f"/v1/members/{owner.member_id}", json={"role": "admin"}, headers=owner.headers()
            )
            assert change.status_code == 503
        assert len(await p.members(owner)) == 1
        assert (await p.accept(token)).status_code == 200  # the link was not used up


async def test_a_sign_in_link_works_once_and_only_for_an_active_member(iso: Isolation) -> None:
    ws = (await create_workspace(iso))["workspace_id"]
    async with people_service(iso) as p:
        owner = await p.operator_adds(ws, "owner@example.com")
        settings = p.settings.model_copy(update={"smtp_host": ""})
        added = await add_member(settings, ws, "helper@example.com", "member")
        assert added.link is not None
        relative = "/" + added.link.split("/", 3)[3]
        assert relative.startswith("/v1/auth/link?token=")
        first = await p.client.get(relative)
        assert first.status_code == 302 and first.headers["location"] == "/"
        assert (await p.session(session_from(first))).member_id == added.member_id
        used = await p.client.get(relative)
        assert used.status_code == 401 and used.json()["error"] == "invalid_link"
        p.client.cookies.clear()

        again = await add_member(settings, ws, "helper@example.com", "member")
        assert again.link is not None and again.member_id == added.member_id
        removed = await p.client.delete(f"/v1/members/{added.member_id}", headers=owner.headers())
        assert removed.status_code == 204
        after_removal = await p.client.get("/" + again.link.split("/", 3)[3])
        assert after_removal.status_code == 401
        assert (await p.client.get("/v1/auth/link?token=not-a-token")).status_code == 401
