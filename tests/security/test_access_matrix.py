"""Every route of every service, called by each role's session and each key scope: exactly the callers the table
(`access.py`) permits get past authorisation, every other answers 403 and changes nothing, and no answer to
workspace A carries workspace B's ids.

Routes are enumerated from the monolith (`spendstream up`'s `_monolith`), so a service that joins it is covered
without a change here; a route that names no action, or more than one, fails unless it is on the short
allow-list of routes authenticated otherwise.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from fastapi.routing import APIRoute

from spendstream.alerts.app import create_service as create_alerts
from spendstream.alerts.settings import AlertsSettings
from spendstream.cli.commands import _monolith
from spendstream.common.access import Action, allowed
from spendstream.common.http_auth import api_routes, route_actions
from spendstream.common.kafka import Publisher, make_broker
from spendstream.common.records import AuditRecord, KeyScope, MemberRecord, Role
from spendstream.common.service import build_http_app
from spendstream.common.sessions import CSRF_HEADER, SESSION_COOKIE, SessionStore
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import AUDIT_RECORDS, BUDGETS, MEMBERS, topic_name
from spendstream.console.pages import PAGES as CONSOLE_PAGES
from spendstream.ingest.workspaces import ControlPlane
from tests.ingest.topics import read_all
from tests.security.answers import of_a
from tests.support import Isolation, auth, create_workspace, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

# Routes authenticated by something other than a member or a key: health and metrics (none), the Stripe
# webhook (Stripe's signature), operator routes (the internal token), signing in (a password, an invitation's or
# a one-time link's token, or a provider; and which of those the installation offers, asked before signing in),
# and the console's shell, assets and role table (static files, the same for everyone; its data comes from the
# guarded /v1 routes). Signing out is a member's own action
# (`account.write`).
UNGUARDED_PREFIXES = ("/internal/", "/v1/auth/oidc/", "/v1/stripe/webhook/", "/assets/", "/console/")
UNGUARDED_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/auth/signin",
        "/v1/auth/methods",
        "/v1/auth/link",
        "/v1/invitations/accept",
        "/",
        *(f"/{page}" for page in CONSOLE_PAGES),
    }
)
# A body no route accepts: an allowed caller is answered by validation (or the route's own refusal), so no
# permitted call has to change anything either.
PROBE = {"access_matrix_probe": True}
REFUSALS = frozenset({"forbidden", "csrf"})


@dataclass(frozen=True)
class CallerSpec:
    name: str
    headers: dict[str, str]
    role: Role | None = None  # a session's
    scope: KeyScope | None = None  # a key's
    issuer: Role | None = None  # a member-issued key's member role

    def permits(self, action: Action) -> bool:
        if self.role is not None:
            return allowed(action, role=self.role)
        return allowed(action, scope=self.scope, issuer=self.issuer)


def guarded(path: str) -> bool:
    return path not in UNGUARDED_PATHS and not path.startswith(UNGUARDED_PREFIXES)


def member(member_id: str, workspace_id: str, role: Role) -> MemberRecord:
    now = datetime.now(UTC)
    return MemberRecord(member_id=member_id, workspace_id=workspace_id, role=role, created_at=now, updated_at=now)


async def end_offsets(iso: Isolation, skip: frozenset[str]) -> dict[TopicPartition, int]:
    """The end offset of every partition of the test's topics but `skip`: what a change would move."""
    admin = AIOKafkaAdminClient(bootstrap_servers=iso.stack.kafka)
    await admin.start()
    try:
        names = [t for t in await admin.list_topics() if t.startswith(iso.prefix) and t not in skip]
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=iso.stack.kafka, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(t, p) for t in names for p in consumer.partitions_for_topic(t) or ()]
        if len(partitions) < len(names):
            await consumer._client.force_metadata_update()
            partitions = [TopicPartition(t, p) for t in names for p in consumer.partitions_for_topic(t) or ()]
        return dict(await consumer.end_offsets(partitions))
    finally:
        await consumer.stop()


async def audit_records(iso: Isolation) -> list[AuditRecord]:
    """Every record on the test's audit topic, read up to its current end."""
    records = await read_all(iso.stack.kafka, topic_name(AUDIT_RECORDS, iso.prefix))
    return [AUDIT_RECORDS.record.decode(m.value) for m in records if m.value]


async def redis_keys(redis: aioredis.Redis, prefix: str) -> set[bytes]:
    """The test's Redis keys but sessions (a session's idle clock moves on every request by design)."""
    return {k async for k in redis.scan_iter(match=f"{prefix}*") if b"people:session:" not in k}


def concrete(path: str, ids: dict[str, str]) -> str:
    """The path with each parameter filled by workspace B's id of that name if there is one, else a plausible
    id: a route that looked an id up outside the caller's workspace would find B's."""
    out = path
    while "{" in out:
        start, end = out.index("{"), out.index("}")
        name = out[start + 1 : end]
        out = out[:start] + ids.get(name, "id_0123456789") + out[end + 1 :]
    return out


@dataclass
class World:
    iso: Isolation
    client: httpx.AsyncClient
    routes: list[tuple[str, APIRoute]]
    callers: list[CallerSpec]
    b_ids: dict[str, str]
    b_secrets: list[str]
    redis: aioredis.Redis
    b_admin: str
    member_ids: dict[str, str]
    workspace_id: str
    openapi: dict[str, Any]


@pytest.fixture
async def world(iso: Isolation, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    settings = iso.settings(BaseServiceSettings)
    a = await create_workspace(iso, "a")
    b = await create_workspace(iso, "b")
    redis = aioredis.Redis.from_url(iso.stack.redis)
    sessions = SessionStore(settings, redis)
    broker = make_broker(settings, "tests")
    await broker.connect()
    members = Publisher(broker, MEMBERS, iso.prefix)
    callers: list[CallerSpec] = []
    ids = {role: f"mem_{role}_{secrets.token_hex(4)}" for role in ("viewer", "member", "admin", "owner")}
    b_owner = f"mem_b_owner_{secrets.token_hex(4)}"
    try:
        for role, member_id in ids.items():
            await members.publish(member(member_id, a["workspace_id"], role), member_id)  # type: ignore[arg-type]
            session_id, _ = await sessions.create(member_id, a["workspace_id"], "password")
            headers = {"Cookie": f"{SESSION_COOKIE}={session_id}", CSRF_HEADER: sessions.csrf_token(session_id)}
            callers.append(CallerSpec(f"{role} session", headers, role=role))  # type: ignore[arg-type]
        await members.publish(member(b_owner, b["workspace_id"], "owner"), b_owner)
        for scope in ("ingest", "read", "admin"):
            callers.append(CallerSpec(f"{scope} key", auth(a[scope]), scope=scope))
        control = ControlPlane(settings, broker)
        viewers = await control.issue_key(a["workspace_id"], "admin", issued_by=ids["viewer"])
        callers.append(CallerSpec("admin key of a viewer", auth(viewers.key), scope="admin", issuer="viewer"))
    finally:
        await broker.stop()

    env = iso.env(
        AUTH_FAILURES_PER_ADDRESS="1000000",
        AUTH_FAILURES_PER_KEY_PREFIX="1000000",
        PRICE_ADMIN_WORKSPACES=a["workspace_id"],
        WEBHOOK_ALLOW_PRIVATE="true",
        # In this process: the suite's one chDB engine (chDB opens one path per process), not the monolith's own.
        CLICKHOUSE_URL=iso.stack.clickhouse,
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = build_http_app(_monolith(settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spendstream.test", timeout=60) as client:
            # Workspace B has data of its own, whose ids A's callers then name in every path.
            budget = await client.post("/v1/budgets", headers=auth(b["admin"]), json={"name": "b", "amount_usd": "5"})
            assert budget.status_code == 201, budget.text
            b_keys = await client.get("/v1/admin/keys", headers=auth(b["admin"]))
            assert b_keys.status_code == 200, b_keys.text
            key_ids = [k["key_id"] for k in b_keys.json()]
            b_ids = {
                "budget_id": budget.json()["budget_id"],
                "key_id": key_ids[0],
                "workspace_id": b["workspace_id"],
                "member_id": b_owner,
            }
            yield World(
                iso=iso,
                client=client,
                routes=[(p, r) for p, r in api_routes(app.routes)],
                callers=callers,
                b_ids=b_ids,
                b_secrets=[b["workspace_id"], b_owner, budget.json()["budget_id"], *key_ids],
                redis=redis,
                b_admin=b["admin"],
                member_ids=ids,
                workspace_id=a["workspace_id"],
                openapi=app.openapi(),
            )
    await redis.aclose()


async def call(client: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    body = PROBE if method in ("POST", "PUT", "PATCH") else None
    return await client.request(method, path, headers=headers, json=body)


def refused(response: httpx.Response) -> bool:
    """A refusal by the access check: 401, or 403 naming a permission or the CSRF token."""
    if response.status_code == 401:
        return True
    if response.status_code != 403:
        return False
    return bool(response.json().get("error") in REFUSALS)


async def test_every_route_permits_exactly_the_callers_the_table_names(world: World) -> None:
    guarded_routes: list[tuple[str, str, Action]] = []
    for path, route in world.routes:
        actions = route_actions(route)
        if not guarded(path):
            assert actions == [], f"{path} is on the allow-list but checks {actions}"
            continue
        assert len(actions) == 1, f"{path} must name exactly one action, names {actions}"
        for method in sorted(route.methods or ()):
            guarded_routes.append((method, path, actions[0]))
    served = {path for _, path, _ in guarded_routes}
    # The OpenAPI document names each operation's permission, as the route checks it.
    for method, path, action in guarded_routes:
        operation = world.openapi["paths"].get(path, {}).get(method.lower())
        if operation is not None:  # routes left out of the schema are checked all the same
            assert operation["x-permission"] == action, (method, path)
    # The services whose routes the monolith must hold (people's join it when it is part of the monolith).
    for expected in ("/v1/events", "/v1/usage", "/v1/budgets", "/v1/deletions", "/v1/connectors", "/v1/admin/keys"):
        assert expected in served
    assert len(world.callers) == 8

    # First every refusal: nothing any of them does may change a topic (but the audit log's) or a Redis key.
    before_topics = await end_offsets(world.iso, frozenset({topic_name(AUDIT_RECORDS, world.iso.prefix)}))
    before_redis = await redis_keys(world.redis, world.iso.prefix)
    refusals = 0
    for method, path, action in guarded_routes:
        for caller in world.callers:
            if caller.permits(action):
                continue
            response = await call(world.client, method, concrete(path, world.b_ids), caller.headers)
            assert response.status_code == 403, f"{caller.name} {method} {path} ({action}): {response.status_code}"
            assert response.json()["error"] == "forbidden", response.text
            assert action in response.json()["message"]
            refusals += 1
    assert refusals > 0
    after_topics = await end_offsets(world.iso, frozenset({topic_name(AUDIT_RECORDS, world.iso.prefix)}))
    assert after_topics == before_topics, {
        tp.topic: (before_topics.get(tp), end) for tp, end in after_topics.items() if before_topics.get(tp) != end
    }
    assert await redis_keys(world.redis, world.iso.prefix) == before_redis

    # Then every permitted call: past the access check, and nothing of workspace B in any answer.
    permitted = 0
    for method, path, action in guarded_routes:
        for caller in world.callers:
            if not caller.permits(action):
                continue
            response = await call(world.client, method, concrete(path, world.b_ids), caller.headers)
            assert not refused(response), f"{caller.name} {method} {path} ({action}): {response.text}"
            assert response.status_code < 500 or response.status_code == 503, f"{method} {path}: {response.text}"
            for secret in world.b_secrets:
                answer = of_a(path, response.text)
                assert secret not in answer, f"{caller.name} {method} {path} answered with B's {secret}"
            permitted += 1
    assert permitted > 0

    # Each administrative call left its record, refusals too, attributed to the member or key that made it.
    records = await audit_records(world.iso)
    seen = {(r.actor_id, r.action, r.outcome) for r in records}
    assert (world.member_ids["owner"], "workspace.lifecycle", "allowed") in seen
    assert (world.member_ids["viewer"], "workspace.lifecycle", "denied") in seen
    assert (world.member_ids["admin"], "export.read", "allowed") in seen
    assert not any(r.action in ("events.write", "reservations.write") for r in records)
    assert {r.workspace_id for r in records} <= {world.workspace_id, world.b_ids["workspace_id"]}

    # B's key named in A's DELETE /v1/admin/keys/{key_id} still works: nothing of B was touched.
    assert (await world.client.get("/v1/budgets", headers=auth(world.b_admin))).status_code == 200


async def test_a_member_removed_loses_their_session_and_their_keys_at_once(world: World) -> None:
    """The viewer is removed: every service refuses the viewer's session and the key the viewer issued."""
    viewer = next(c for c in world.callers if c.name == "viewer session")
    viewers_key = next(c for c in world.callers if c.name == "admin key of a viewer")
    assert (await world.client.get("/v1/usage", headers=viewers_key.headers)).status_code == 200
    settings = world.iso.settings(BaseServiceSettings)
    broker = make_broker(settings, "tests")
    await broker.connect()
    try:
        removed = member(world.member_ids["viewer"], world.workspace_id, "viewer")
        removed = removed.model_copy(update={"status": "removed"})
        await Publisher(broker, MEMBERS, world.iso.prefix).publish(removed, removed.member_id)
    finally:
        await broker.stop()

    async def everywhere_refused() -> bool:
        for headers in (viewer.headers, viewers_key.headers):
            for path in ("/v1/usage", "/v1/budgets", "/v1/connectors", "/v1/admin/workspace", "/v1/deletions/x"):
                if (await world.client.get(path, headers=headers)).status_code != 401:
                    return False
        return True

    await eventually(everywhere_refused, timeout=10)


async def test_an_action_whose_audit_record_cannot_be_written_is_refused_and_changes_nothing(
    iso: Isolation,
) -> None:
    """The audit topic is gone (and the broker creates none): alerts refuses a budget with 503, publishes no
    budget, and keeps answering reads."""
    a = await create_workspace(iso, "a")
    admin = AIOKafkaAdminClient(bootstrap_servers=iso.stack.kafka)
    await admin.start()
    try:
        await admin.delete_topics([topic_name(AUDIT_RECORDS, iso.prefix)])
    finally:
        await admin.close()
    settings = iso.settings(AlertsSettings, rollup_url="")
    app = build_http_app([create_alerts(settings)])
    budgets_topic = topic_name(BUDGETS, iso.prefix)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spendstream.test", timeout=60) as client:
            before = await end_offsets(iso, frozenset())
            response = await client.post(
                "/v1/budgets", headers=auth(a["admin"]), json={"name": "refused", "amount_usd": "5"}
            )
            assert response.status_code == 503, response.text
            assert response.json()["error"] == "audit_unavailable"
            assert response.headers["retry-after"] == "5"
            after = await end_offsets(iso, frozenset())
            assert {tp: o for tp, o in after.items() if tp.topic == budgets_topic} == {
                tp: o for tp, o in before.items() if tp.topic == budgets_topic
            }
            listed = await client.get("/v1/budgets", headers=auth(a["admin"]))
            assert listed.status_code == 200
            assert listed.json() == []
