"""`Access.require(action)`: one check for keys and sessions. A key's scope, capped by its issuing member's
role read live; a member's role; CSRF on cookie-authenticated changes; an audit record before every
administrative action and the action refused (503, the route never run) when the record cannot be written."""

# No `from __future__ import annotations`: FastAPI evaluates the routes' Annotated[..., Depends(...)] parameters.

import base64
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException

from spendstream.common import errors
from spendstream.common.access import Action
from spendstream.common.audit import AuditTrail, AuditUnavailable
from spendstream.common.auth_brake import AuthBrake
from spendstream.common.http_auth import Access, Caller, action_of
from spendstream.common.members import MemberDirectory
from spendstream.common.records import AuditOutcome, MemberRecord, Role
from spendstream.common.service import behind_proxies
from spendstream.common.sessions import CSRF_HEADER, SESSION_COOKIE, SessionStore
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.tenants import KeyDirectory, Principal

SETTINGS = BaseServiceSettings(kek=base64.b64encode(os.urandom(32)).decode())
NOW = datetime(2026, 12, 4, tzinfo=UTC)


class DictKeys(KeyDirectory):
    """Keys from a dict instead of the replayed API-key topic (a revoked key is simply absent)."""

    def __init__(self, keys: dict[str, Principal]) -> None:
        self.keys = keys
        self.brake = AuthBrake(SETTINGS)

    def authenticate(self, key: str) -> Principal | None:
        return self.keys.get(key)


class DictMembers(MemberDirectory):
    """Members from a dict instead of the replayed people.members.v1 topic, with the same `active` rule."""

    def __init__(self) -> None:
        self.records: dict[str, MemberRecord] = {}

    def put(self, member_id: str, role: Role, workspace_id: str = "ws1", status: str = "active") -> None:
        self.records[member_id] = MemberRecord.model_validate(
            {
                "member_id": member_id,
                "workspace_id": workspace_id,
                "role": role,
                "status": status,
                "created_at": NOW,
                "updated_at": NOW,
            }
        )

    async def active(self, member_id: str, workspace_id: str) -> MemberRecord | None:
        record = self.records.get(member_id)
        if record is None or record.status != "active" or record.workspace_id != workspace_id:
            return None
        return record


class MemoryRedis:
    """The few Redis commands SessionStore uses, in a dict (no expiry: the store's own clocks are tested
    with real Redis in tests/common/test_sessions.py)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.sets: dict[str, set[str]] = {}

    async def get(self, name: str) -> Any:
        return self.values.get(name)

    async def set(self, name: str, value: str, px: int | None = None) -> Any:
        self.values[name] = value

    async def getdel(self, name: str) -> Any:
        return self.values.pop(name, None)

    async def delete(self, *names: str) -> Any:
        found = 0
        for name in names:
            found += (self.values.pop(name, None) is not None) + (self.sets.pop(name, None) is not None)
        return found

    async def sadd(self, name: str, *values: str) -> Any:
        self.sets.setdefault(name, set()).update(values)

    async def srem(self, name: str, *values: str) -> Any:
        self.sets.get(name, set()).difference_update(values)

    async def smembers(self, name: str) -> Any:
        return set(self.sets.get(name, set()))

    async def pexpire(self, name: str, time: int) -> Any:
        return True


class Trail(AuditTrail):
    """Audit records kept in a list; `broken` makes every publish fail as an unreachable broker does."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, str, AuditOutcome, str, str]] = []
        self.reasons: list[str] = []  # each record's `detail["reason"]`, "" when it has none
        self.broken = False

    async def record(self, **fields: Any) -> Any:
        if self.broken:
            raise AuditUnavailable("broker unreachable")
        self.records.append(
            (
                fields["workspace_id"],
                fields["actor_id"],
                fields["action"],
                fields["outcome"],
                fields["target"],
                fields["request_id"],
            )
        )
        self.reasons.append((fields.get("detail") or {}).get("reason", ""))


class World:
    def __init__(self) -> None:
        self.members = DictMembers()
        self.members.put("m-viewer", "viewer")
        self.members.put("m-admin", "admin")
        self.members.put("m-owner", "owner")
        self.keys = DictKeys(
            {
                "ssk_ingest": Principal(workspace_id="ws1", scope="ingest", key_id="k-ingest"),
                "ssk_read": Principal(workspace_id="ws1", scope="read", key_id="k-read"),
                "ssk_admin": Principal(workspace_id="ws1", scope="admin", key_id="k-admin"),
                "ssk_admin_by_viewer": Principal(
                    workspace_id="ws1", scope="admin", key_id="k-viewers", issued_by="m-viewer"
                ),
                "ssk_admin_by_admin": Principal(
                    workspace_id="ws1", scope="admin", key_id="k-admins", issued_by="m-admin"
                ),
            }
        )
        self.redis = MemoryRedis()
        self.sessions = SessionStore(SETTINGS, self.redis)
        self.trail = Trail()
        self.ran: list[str] = []
        self.access = Access(self.keys, self.members, self.sessions, self.trail)
        self.app = self._app()

    def _app(self) -> FastAPI:
        app = FastAPI()
        errors.install(app)
        access = self.access

        def caller_of(action: Action) -> Any:
            return Annotated[Caller, Depends(access.require(action))]

        @app.get("/usage")
        async def usage(caller: caller_of("usage.read")) -> dict[str, Any]:  # type: ignore[valid-type]
            self.ran.append("usage")
            return dict(caller.model_dump())

        @app.get("/export")
        async def export(caller: caller_of("export.read")) -> dict[str, Any]:  # type: ignore[valid-type]
            self.ran.append("export")
            return {}

        @app.post("/budgets/{budget_id}")
        async def budget(caller: caller_of("budgets.write"), budget_id: str) -> dict[str, Any]:  # type: ignore[valid-type]
            self.ran.append(f"budget {budget_id} audited {len(self.trail.records)}")
            if budget_id == "boom":
                raise HTTPException(409, detail={"error": "conflict", "message": "no"})
            return {"webhooks": caller.can("webhooks.write")}

        @app.post("/cancel")
        async def cancel(caller: caller_of("workspace.lifecycle")) -> dict[str, Any]:  # type: ignore[valid-type]
            self.ran.append("cancel")
            return {}

        @app.post("/events")
        async def events(caller: caller_of("events.write")) -> dict[str, Any]:  # type: ignore[valid-type]
            self.ran.append("events")
            return {}

        return app

    async def session(self, member_id: str) -> tuple[dict[str, str], dict[str, str]]:
        """A signed-in member's cookie and CSRF header."""
        session_id, _ = await self.sessions.create(member_id, "ws1", "password")
        return {SESSION_COOKIE: session_id}, {CSRF_HEADER: self.sessions.csrf_token(session_id)}


@pytest.fixture
async def world() -> AsyncIterator[World]:
    yield World()


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=world.app), base_url="http://test") as http:
        yield http


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def cookie(session_id: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={session_id}"}


async def test_a_bearer_key_or_an_x_api_key_authenticates(client: httpx.AsyncClient) -> None:
    assert (await client.get("/usage", headers=bearer("ssk_read"))).json()["actor_id"] == "k-read"
    assert (await client.get("/usage", headers={"authorization": "bearer  ssk_read "})).json()["kind"] == "key"
    assert (await client.get("/usage", headers={"X-API-Key": "ssk_admin"})).json()["actor_id"] == "k-admin"


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer nope"}, {"X-API-Key": "nope"}, {"Authorization": "Basic ssk_read"}]
)
async def test_a_missing_or_unknown_key_is_401_with_a_bearer_challenge(
    client: httpx.AsyncClient, world: World, headers: dict[str, str]
) -> None:
    response = await client.get("/usage", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"] == "unauthorized"
    assert world.ran == []


async def test_a_key_is_allowed_what_its_scope_holds_and_refused_the_rest(
    client: httpx.AsyncClient, world: World
) -> None:
    assert (await client.get("/usage", headers=bearer("ssk_ingest"))).status_code == 403
    assert (await client.post("/events", headers=bearer("ssk_ingest"))).status_code == 200
    assert (await client.post("/events", headers=bearer("ssk_read"))).status_code == 403
    refused = await client.post("/budgets/b1", headers=bearer("ssk_read"))
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden"
    assert "budgets.write" in refused.json()["message"]
    assert (await client.post("/cancel", headers=bearer("ssk_admin"))).status_code == 200
    assert world.ran == ["events", "cancel"]


async def test_a_member_issued_key_never_exceeds_its_members_role(client: httpx.AsyncClient, world: World) -> None:
    viewers = bearer("ssk_admin_by_viewer")
    assert (await client.get("/usage", headers=viewers)).json()["role"] == "viewer"
    assert (await client.post("/budgets/b1", headers=viewers)).status_code == 403
    admins = bearer("ssk_admin_by_admin")
    assert (await client.post("/budgets/b1", headers=admins)).json() == {"webhooks": True}
    assert (await client.post("/cancel", headers=admins)).status_code == 403  # an owner's action
    # The role is read live: the admin demoted to viewer narrows the key at once.
    world.members.put("m-admin", "viewer")
    assert (await client.post("/budgets/b1", headers=admins)).status_code == 403
    assert (await client.get("/usage", headers=admins)).status_code == 200


async def test_a_removed_issuer_ends_the_key(client: httpx.AsyncClient, world: World) -> None:
    world.members.put("m-admin", "admin", status="removed")
    response = await client.get("/usage", headers=bearer("ssk_admin_by_admin"))
    assert response.status_code == 401
    # A member of another workspace does not vouch for this one's key either.
    world.members.put("m-admin", "admin", workspace_id="ws2")
    assert (await client.get("/usage", headers=bearer("ssk_admin_by_admin"))).status_code == 401


async def test_a_member_issued_key_is_refused_where_no_member_directory_caps_it(world: World) -> None:
    access = Access(world.keys)
    app = FastAPI()
    errors.install(app)

    @app.get("/usage")
    async def usage(caller: Annotated[Caller, Depends(access.require("usage.read"))]) -> dict[str, str]:
        return {"actor_id": caller.actor_id}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        assert (await http.get("/usage", headers=bearer("ssk_admin_by_admin"))).status_code == 401
        assert (await http.get("/usage", headers=bearer("ssk_read"))).json() == {"actor_id": "k-read"}
        # No session store: a cookie authenticates nothing.
        assert (await http.get("/usage", headers=cookie("anything"))).status_code == 401


@pytest.mark.parametrize(
    ("member_id", "usage", "budget", "cancel"),
    [("m-viewer", 200, 403, 403), ("m-admin", 200, 200, 403), ("m-owner", 200, 200, 200)],
)
async def test_a_session_is_allowed_what_its_members_role_holds(
    client: httpx.AsyncClient, world: World, member_id: str, usage: int, budget: int, cancel: int
) -> None:
    cookies, csrf = await world.session(member_id)
    client.cookies = cookies
    seen = await client.get("/usage")
    assert seen.status_code == usage
    assert seen.json()["kind"] == "member"
    assert seen.json()["actor_id"] == member_id
    assert (await client.post("/budgets/b1", headers=csrf)).status_code == budget
    assert (await client.post("/cancel", headers=csrf)).status_code == cancel


async def test_a_cookie_authenticated_change_needs_the_sessions_csrf_token(
    client: httpx.AsyncClient, world: World
) -> None:
    cookies, csrf = await world.session("m-owner")
    other_cookies, other_csrf = await world.session("m-admin")
    client.cookies = cookies
    for headers in ({}, {CSRF_HEADER: "0" * 64}, other_csrf):
        refused = await client.post("/budgets/b1", headers=headers)
        assert refused.status_code == 403
        assert refused.json()["error"] == "csrf"
    assert world.ran == []
    # Each refusal is on the audit log as the member's denied attempt, with its reason.
    assert [(r[1], r[2], r[3]) for r in world.trail.records] == [("m-owner", "budgets.write", "denied")] * 3
    assert world.trail.reasons == ["csrf"] * 3
    assert (await client.get("/usage")).status_code == 200  # a read needs no token
    assert (await client.post("/budgets/b1", headers=csrf)).status_code == 200
    # A key is not a cookie: no token needed.
    client.cookies.clear()
    assert (await client.post("/budgets/b1", headers=bearer("ssk_admin"))).status_code == 200


async def test_a_csrf_refusal_stands_when_its_audit_record_cannot_be_written(
    client: httpx.AsyncClient, world: World
) -> None:
    client.cookies, _ = await world.session("m-owner")
    world.trail.broken = True
    refused = await client.post("/budgets/b1")
    assert (refused.status_code, refused.json()["error"]) == (403, "csrf")
    assert world.ran == []


async def test_an_unknown_or_revoked_session_is_401_and_a_removed_members_session_ends(
    client: httpx.AsyncClient, world: World
) -> None:
    assert (await client.get("/usage", headers=cookie("made-up"))).status_code == 401
    cookies, _ = await world.session("m-admin")
    await world.sessions.revoke(cookies[SESSION_COOKIE])
    assert (await client.get("/usage", headers=cookie(cookies[SESSION_COOKIE]))).status_code == 401
    cookies, _ = await world.session("m-admin")
    world.members.put("m-admin", "admin", status="removed")
    assert (await client.get("/usage", headers=cookie(cookies[SESSION_COOKIE]))).status_code == 401
    assert await world.sessions.get(cookies[SESSION_COOKIE]) is None  # revoked, not merely refused
    world.members.put("m-admin", "admin")  # re-added later: the old session stays dead
    assert (await client.get("/usage", headers=cookie(cookies[SESSION_COOKIE]))).status_code == 401


async def test_a_key_wins_over_a_cookie(client: httpx.AsyncClient, world: World) -> None:
    cookies, _ = await world.session("m-owner")
    client.cookies = cookies
    assert (await client.get("/usage", headers=bearer("ssk_read"))).json()["actor_id"] == "k-read"
    # A wrong key is not rescued by a valid cookie.
    assert (await client.get("/usage", headers=bearer("nope"))).status_code == 401


async def test_an_administrative_action_is_recorded_before_the_route_runs(
    client: httpx.AsyncClient, world: World
) -> None:
    response = await client.post("/budgets/b7", headers={**bearer("ssk_admin"), "X-Request-Id": "req-42"})
    assert response.status_code == 200
    assert world.trail.records == [("ws1", "k-admin", "budgets.write", "allowed", "b7", "req-42")]
    assert world.ran == ["budget b7 audited 1"]  # the record existed when the route ran


async def test_a_failed_action_is_recorded_as_a_failure_after_its_allowance(
    client: httpx.AsyncClient, world: World
) -> None:
    assert (await client.post("/budgets/boom", headers=bearer("ssk_admin"))).status_code == 409
    assert [r[3] for r in world.trail.records] == ["allowed", "failure"]
    assert {r[5] for r in world.trail.records} != {""}
    assert len({r[5] for r in world.trail.records}) == 1  # one request id joins them


async def test_a_refusal_is_recorded_as_denied(client: httpx.AsyncClient, world: World) -> None:
    assert (await client.post("/cancel", headers=bearer("ssk_read"))).status_code == 403
    assert [(r[1], r[2], r[3]) for r in world.trail.records] == [("k-read", "workspace.lifecycle", "denied")]
    assert world.trail.reasons == ["permission"]


async def test_an_action_whose_record_cannot_be_written_is_refused_and_never_runs(
    client: httpx.AsyncClient, world: World
) -> None:
    world.trail.broken = True
    response = await client.post("/budgets/b1", headers=bearer("ssk_admin"))
    assert response.status_code == 503
    assert response.json()["error"] == "audit_unavailable"
    assert response.headers["retry-after"] == "5"
    assert (await client.get("/export", headers=bearer("ssk_admin"))).status_code == 503
    assert world.ran == []
    # Reads and metering traffic write no record, so they go on.
    assert (await client.get("/usage", headers=bearer("ssk_admin"))).status_code == 200
    assert (await client.post("/events", headers=bearer("ssk_ingest"))).status_code == 200
    # A refusal stays a refusal (403) when its record cannot be written.
    assert (await client.post("/cancel", headers=bearer("ssk_read"))).status_code == 403


async def test_reads_and_metering_are_not_audited_but_exports_are(client: httpx.AsyncClient, world: World) -> None:
    await client.get("/usage", headers=bearer("ssk_read"))
    await client.post("/events", headers=bearer("ssk_ingest"))
    await client.post("/events", headers=bearer("ssk_read"))  # denied metering is not an administrative act
    assert world.trail.records == []
    await client.get("/export", headers=bearer("ssk_read"))
    assert [(r[2], r[3]) for r in world.trail.records] == [("export.read", "allowed")]


async def test_an_audited_action_is_refused_where_there_is_no_audit_trail(world: World) -> None:
    access = Access(world.keys, world.members, world.sessions)
    app = FastAPI()
    errors.install(app)

    @app.post("/cancel")
    async def cancel(caller: Annotated[Caller, Depends(access.require("workspace.lifecycle"))]) -> dict[str, str]:
        world.ran.append("cancel")
        return {}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        assert (await http.post("/cancel", headers=bearer("ssk_admin"))).status_code == 503
    assert world.ran == []


async def test_a_request_id_is_kept_only_in_a_safe_shape(client: httpx.AsyncClient, world: World) -> None:
    await client.post("/budgets/b1", headers={**bearer("ssk_admin"), "X-Request-Id": "a b<script>"})
    await client.post("/budgets/b1", headers={**bearer("ssk_admin"), "X-Request-Id": "x" * 65})
    ids = [r[5] for r in world.trail.records]
    assert len(ids) == 2
    assert all(len(i) == 36 for i in ids)  # replaced by fresh UUIDs


async def test_a_workspace_gate_refuses_before_the_permission_check(world: World) -> None:
    async def gate(caller: Caller, action: Action) -> None:
        if action == "events.write":
            raise HTTPException(403, detail={"error": "workspace_cancelled", "message": "cancelled"})

    access = Access(world.keys, world.members, world.sessions, world.trail, gate=gate)
    app = FastAPI()
    errors.install(app)

    @app.post("/events")
    async def events(caller: Annotated[Caller, Depends(access.require("events.write"))]) -> dict[str, str]:
        return {}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        refused = await http.post("/events", headers=bearer("ssk_ingest"))
    assert refused.status_code == 403
    assert refused.json()["error"] == "workspace_cancelled"


async def test_too_many_unknown_keys_from_one_address_are_braked(client: httpx.AsyncClient) -> None:
    answers = [(await client.get("/usage", headers=bearer(f"ssk_guess_{i}"))).status_code for i in range(60)]
    assert answers[0] == 401
    assert answers[-1] == 429
    blocked = await client.get("/usage", headers=bearer("ssk_read"))  # the address is blocked, whatever the key
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0


async def test_behind_a_trusted_proxy_the_brake_stops_the_guessing_client_not_the_proxy(world: World) -> None:
    # The ASGI client's peer is 127.0.0.1: here the proxy every client's requests come through.
    app = behind_proxies(world.app, ["127.0.0.1"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        guesser, other = {"X-Forwarded-For": "198.51.100.7"}, {"X-Forwarded-For": "203.0.113.9"}
        for i in range(60):
            await http.get("/usage", headers={**bearer(f"ssk_guess_{i}"), **guesser})
        assert (await http.get("/usage", headers={**bearer("ssk_read"), **guesser})).status_code == 429
        assert (await http.get("/usage", headers={**bearer("ssk_read"), **other})).status_code == 200


async def test_forwarding_headers_from_an_untrusted_peer_change_nothing(client: httpx.AsyncClient) -> None:
    # A guesser naming a new client in every request is still braked at its own address.
    for i in range(60):
        await client.get("/usage", headers={**bearer(f"ssk_guess_{i}"), "X-Forwarded-For": f"198.51.100.{i}"})
    honest = await client.get("/usage", headers={**bearer("ssk_read"), "X-Forwarded-For": "203.0.113.9"})
    assert honest.status_code == 429


def test_each_dependency_names_its_action(world: World) -> None:
    assert action_of(world.access.require("budgets.write")) == "budgets.write"
    assert action_of(world.access.require("events.write")) == "events.write"
    assert action_of(lambda: None) is None
