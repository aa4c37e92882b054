"""No key of workspace A reads, exports, erases, budgets or publishes anything of workspace B, by any route.

Routes are enumerated from the running app (every service's FastAPI routes): a new route that forgets its
key check fails `test_every_route_refuses_requests_without_a_valid_key`. Every route is then called with each
of A's keys and B's identifiers in the path, the query and the body; nothing of B may show up in an answer,
and B is checked intact afterwards. The CLIs that take a key and the raw Kafka intake get the same treatment;
an erased workspace's keys are refused from the moment ingest tombstones them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from spendstream.cli.__main__ import main as cli
from spendstream.common.topics import INGEST_RAW, topic_name
from tests.security.answers import of_a
from tests.security.pipeline import api_routes, concrete, live
from tests.security.routes import OWN_CREDENTIAL, PROBES, SIGN_IN, public_paths, unguarded_paths
from tests.support import Isolation, Stack, auth, create_workspace, new_isolation, provision, usage_event

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

B_EVENTS = 3


@dataclass
class World:
    url: str
    app: FastAPI
    iso: Isolation
    a: dict[str, Any]
    b: dict[str, Any]
    c: dict[str, Any]  # erased by the last test
    d: dict[str, Any]  # sends on the raw intake
    b_budget: str
    b_request: str
    b_key_ids: list[str]
    b_event_ids: list[str]

    def b_secrets(self) -> list[str]:
        """Identifiers of B that no answer to A may contain."""
        return [
            self.b["workspace_id"],
            self.b_budget,
            self.b_request,
            *self.b_key_ids,
            *self.b_event_ids,
            self.b["ingest"],
            self.b["read"],
            self.b["admin"],
        ]


def until(call: Any, ok: Any, timeout: float = 30.0) -> httpx.Response:
    """Repeat `call` until `ok(response)` (a new key takes a poll to reach every replayed table)."""
    deadline = time.monotonic() + timeout
    while True:
        response: httpx.Response = call()
        if ok(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.2)


@pytest.fixture(scope="module")
def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    iso = new_isolation(stack, Path(tmp_path_factory.mktemp("isolation")))
    asyncio.run(provision(iso))
    a, b, c, d = (asyncio.run(create_workspace(iso, name)) for name in ("a", "b", "c", "d"))
    with live(iso) as (url, app), httpx.Client(base_url=url, timeout=30) as http:
        events = [usage_event() for _ in range(B_EVENTS)]
        r = until(
            lambda: http.post("/v1/events", json={"events": events}, headers=auth(b["ingest"])),
            lambda r: r.status_code != 401,
        )
        assert r.status_code == 202, r.text
        r = until(
            lambda: http.post("/v1/budgets", json={"name": "b", "amount_usd": "10"}, headers=auth(b["admin"])),
            lambda r: r.status_code != 401,
        )
        assert r.status_code == 201, r.text
        budget = r.json()["budget_id"]
        keys = http.get("/v1/admin/keys", headers=auth(b["admin"])).json()
        r = until(
            lambda: http.post("/v1/deletions", json={"customer_id": "cust-b"}, headers=auth(b["admin"])),
            lambda r: r.status_code != 401,
        )
        assert r.status_code == 202, r.text
        request = r.json()["request_id"]
        r = until(
            lambda: http.get("/v1/usage", headers=auth(b["read"])),
            lambda r: r.status_code == 200 and r.json()["totals"]["requests"] == B_EVENTS,
            timeout=60,
        )
        assert r.json()["totals"]["requests"] == B_EVENTS
        until(lambda: http.get("/v1/usage", headers=auth(a["read"])), lambda r: r.status_code == 200)
        yield World(
            url, app, iso, a, b, c, d, budget, request, [k["key_id"] for k in keys], [e["event_id"] for e in events]
        )


def _calls(app: FastAPI) -> list[tuple[str, str]]:
    return sorted((method, route.path) for route in api_routes(app) for method in route.methods)


def test_the_routes_that_name_no_permission_are_the_sign_in_routes_probes_and_token_guarded_ones(
    world: World,
) -> None:
    assert unguarded_paths(world.app) == SIGN_IN | PROBES | OWN_CREDENTIAL


def test_every_route_refuses_requests_without_a_valid_key(world: World) -> None:
    public = public_paths(world.app)
    calls = _calls(world.app)
    paths = {path for _, path in calls}
    assert {
        "/v1/events",
        "/v1/usage",
        "/v1/export",
        "/v1/findings",
        "/v1/budgets",
        "/v1/budgets/{budget_id}",
        "/v1/deletions",
        "/v1/deletions/{request_id}",
        "/v1/admin/keys",
        "/v1/admin/keys/{key_id}",
        "/v1/admin/workspace",
        "/internal/v1/spend",
    } <= paths
    forged = [
        {},
        {"Authorization": "Bearer ssk_admin_forged"},
        {"X-API-Key": "ssk_read_forged"},
        {"Authorization": "Basic " + world.a["admin"]},
        {"Authorization": "Bearer"},
    ]
    with httpx.Client(base_url=world.url, timeout=30) as http:
        # The sign-in methods are the installation's, the same for everyone: a key changes nothing about them.
        methods = http.get("/v1/auth/methods").json()
        assert methods == {"password": True, "sso": False}
        for method, path in calls:
            for headers in forged:
                r = http.request(method, concrete(path), headers=headers, json={})
                if path not in public:
                    assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
                elif path == "/v1/auth/methods":
                    assert r.status_code == 200 and r.json() == methods, (headers, r.status_code, r.text)
                else:
                    # No key is asked; an empty body, no token or no provider's answer does nothing, whatever key
                    # came with it (single sign-on's start redirects to the provider, or is off).
                    assert not 200 <= r.status_code < 300, (method, path, headers, r.status_code, r.text)
            # Tenant keys never open service-to-service routes, not even an admin key.
            if path.startswith("/internal/"):
                for scope in ("ingest", "read", "admin"):
                    r = http.request(
                        method,
                        path,
                        params={"workspace_id": world.a["workspace_id"]},
                        headers={**auth(world.a[scope]), "X-Internal-Token": world.a[scope]},
                    )
                    assert r.status_code == 401, (method, path, scope, r.text)


def test_keys_of_a_reach_nothing_of_b_on_any_route(world: World) -> None:
    b_ws = world.b["workspace_id"]
    params = {
        "budget_id": world.b_budget,
        "request_id": world.b_request,
        "key_id": world.b_key_ids[0],
        "workspace_id": b_ws,
        # Objects B may own on the newer routes: what A's keys reach of them is what this test looks at.
        "rate_id": "b-rate",
        "connector_id": "conn_b",
        "job_id": "job_b",
        "reservation_id": "res_b",
        "version_id": "0",
        "member_id": "mem_b",
        "invitation_id": "inv_b",
    }
    with httpx.Client(base_url=world.url, timeout=60) as http:
        for method, template in _calls(world.app):
            path = template.format(**{k: v for k, v in params.items() if "{" + k + "}" in template})
            for scope in ("ingest", "read", "admin"):
                body: dict[str, Any] = {"workspace_id": b_ws}
                if template == "/v1/events":
                    body = {"events": [usage_event(workspace_id=b_ws)]}
                r = http.request(
                    method,
                    path,
                    headers=auth(world.a[scope]),
                    json=body,
                    params={"workspace_id": b_ws, "workspace": b_ws},
                )
                assert r.status_code < 500, (method, path, scope, r.text)
                leaked = [s for s in world.b_secrets() if s in of_a(template, r.text)]
                assert not leaked, (method, path, scope, r.status_code)

        # B is untouched: workspace, keys, budget, deletion request, data and data key as they were.
        ws = http.get("/v1/admin/workspace", headers=auth(world.b["admin"]))
        assert ws.status_code == 200 and ws.json()["status"] == "active" and ws.json()["data_key_version"] == 1
        keys = http.get("/v1/admin/keys", headers=auth(world.b["admin"])).json()
        assert sorted(k["key_id"] for k in keys) == sorted(world.b_key_ids)
        assert all(k["revoked_at"] is None for k in keys)
        assert http.get(f"/v1/budgets/{world.b_budget}", headers=auth(world.b["admin"])).status_code == 200
        request = http.get(f"/v1/deletions/{world.b_request}", headers=auth(world.b["admin"])).json()
        assert request["subject"] == "customer" and request["requested_by"] in world.b_key_ids
        usage = http.get("/v1/usage", headers=auth(world.b["read"])).json()
        assert usage["totals"]["requests"] == B_EVENTS


def test_clis_with_a_key_of_a_see_and_change_nothing_of_b(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--key", world.a["admin"], "--url", world.url]
    for argv in (
        ["budgets", "show", world.b_budget],
        ["budgets", "alerts", world.b_budget],
        ["budgets", "update", world.b_budget, "--amount", "1"],
        ["budgets", "delete", world.b_budget],
    ):
        assert cli([*argv, *common]) == 1, argv
    assert cli(["budgets", "list", *common]) == 0
    exported = tmp_path / "a.json"
    assert (
        cli(
            ["export", "--format", "json", "-o", str(exported), "--key", world.a["read"], "--url", world.url, "--quiet"]
        )
        == 0
    )
    printed = capsys.readouterr()
    text = printed.out + printed.err + exported.read_text()
    assert not [s for s in world.b_secrets() if s in text]
    with httpx.Client(base_url=world.url, timeout=30) as http:
        budget = http.get(f"/v1/budgets/{world.b_budget}", headers=auth(world.b["admin"])).json()
    assert budget["amount_usd"] in ("10", "10.000000000", "10.0") or float(budget["amount_usd"]) == 10


async def test_raw_intake_takes_the_workspace_from_the_key_never_from_the_payload(world: World) -> None:
    b_ws = world.b["workspace_id"]
    claims_b = usage_event()
    names_b = usage_event(workspace_id=b_ws)
    plain = usage_event()
    producer = AIOKafkaProducer(bootstrap_servers=world.iso.stack.kafka, acks="all")
    await producer.start()
    try:
        raw = topic_name(INGEST_RAW, world.iso.prefix)
        key = [("x-api-key", world.d["ingest"].encode())]
        for body in ({"workspace_id": b_ws, "events": [claims_b]}, {"events": [names_b]}, {"events": [plain]}):
            await producer.send_and_wait(raw, json.dumps(body).encode(), key=b_ws.encode(), headers=key)
    finally:
        await producer.stop()
    async with httpx.AsyncClient(base_url=world.url, timeout=30) as http:

        async def exported(key: str) -> list[str]:
            return [e["event_id"] for e in (await http.get("/v1/export", headers=auth(key))).json()["events"]]

        deadline = time.monotonic() + 60
        ids: list[str] = []
        while plain["event_id"] not in ids and time.monotonic() < deadline:
            await asyncio.sleep(0.3)
            ids = await exported(world.d["read"])
        assert ids == [plain["event_id"]]  # the record claiming B and the event naming B are refused
        b_ids = await exported(world.b["read"])
    assert sorted(b_ids) == sorted(world.b_event_ids)


def test_an_erased_workspaces_keys_stop_working_at_once(world: World) -> None:
    c = world.c
    with httpx.Client(base_url=world.url, timeout=30) as http:
        r = until(lambda: http.post("/v1/deletions", json={}, headers=auth(c["admin"])), lambda r: r.status_code != 401)
        assert r.status_code == 202, r.text
        # The first refusal by ingest is the moment its erasure handler has tombstoned the keys.
        r = until(
            lambda: http.get("/v1/admin/workspace", headers=auth(c["admin"])),
            lambda r: r.status_code == 401,
            timeout=120,
        )
        assert r.status_code == 401
        ingest_calls = [(m, p) for m, p in _calls(world.app) if p.startswith(("/v1/events", "/v1/admin"))]
        for method, path in ingest_calls:
            for scope in ("ingest", "read", "admin"):
                r = http.request(method, concrete(path), headers=auth(c[scope]), json={})
                assert r.status_code == 401, (method, path, scope, r.text)

        # The other services replay the same tombstones (within a poll of their key tables).
        public = public_paths(world.app)

        def refused_everywhere() -> list[tuple[str, str, str, int]]:
            accepted = []
            for method, path in [(m, p) for m, p in _calls(world.app) if p not in public]:
                for scope in ("ingest", "read", "admin"):
                    status = http.request(method, concrete(path), headers=auth(c[scope]), json={}).status_code
                    if status != 401:
                        accepted.append((method, path, scope, status))
            return accepted

        deadline = time.monotonic() + 30
        while (left := refused_everywhere()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left
