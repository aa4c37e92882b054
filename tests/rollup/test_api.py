"""rollup's read API over a real consumer: a workspace sees only its own data; usage filters and groups,
the streamed export, and the waste findings with their savings computed by hand."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from spendstream.rollup import api
from spendstream.rollup.app import create_service
from spendstream.rollup.schema import MEASURES
from spendstream.rollup.settings import RollupSettings
from tests.rollup.kafka import lag, publisher
from tests.support import Stack, auth, create_workspace, eventually, new_isolation, provision, serving, usage_event

pytestmark = pytest.mark.integration


def _computed(n: int, **fields: Any) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        event = usage_event(**fields)
        del event["cost_usd"]
        out.append(event)
    return out


@dataclass
class World:
    client: httpx.AsyncClient
    a: dict[str, str]
    b: dict[str, str]
    c: dict[str, str]


@pytest.fixture(scope="module")
async def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    """Workspace a with usage shaped to trigger each finding once; workspace b with one event of its own.
    Shared by this module's tests, which only read."""
    iso = new_isolation(stack, tmp_path_factory.mktemp("rollup-api"))
    await provision(iso)
    a, b, c = await create_workspace(iso, "a"), await create_workspace(iso, "b"), await create_workspace(iso, "c")
    async with publisher(iso) as pub:
        # wrong tier: gpt-4o classifying, 1000 in / 50 out.
        await pub.batch(
            a["workspace_id"],
            _computed(
                100,
                model="gpt-4o",
                input_tokens=1000,
                output_tokens=50,
                tags={"feature": "triage", "task_type": "classification"},
            ),
        )
        # free-tier subsidy: one free customer, 1 USD reported.
        await pub.batch(
            a["workspace_id"],
            [
                usage_event(
                    provider="acme",
                    model="acme-x",
                    input_tokens=10,
                    output_tokens=10,
                    cost_usd=1.0,
                    tags={"feature": "chat", "customer_plan": "free", "customer_id": "cust-free"},
                )
            ],
        )
        # RAG bloat: 20000 in / 100 out on a model with no cheaper sibling.
        await pub.batch(
            a["workspace_id"],
            _computed(
                10,
                provider="anthropic",
                model="claude-haiku-4-5",
                input_tokens=20_000,
                output_tokens=100,
                tags={"feature": "docs-qa", "route": "/ask"},
            ),
        )
        # batchable: evaluations through the synchronous API.
        await pub.batch(
            a["workspace_id"],
            _computed(
                100,
                model="gpt-4o-mini",
                input_tokens=10_000,
                output_tokens=1000,
                tags={"feature": "evals", "task_type": "evaluation"},
            ),
        )
        await pub.batch(b["workspace_id"], [usage_event(cost_usd=9.0, tags={"feature": "b-only"})])
        # c: prompt caching on two service tiers, and a call without cache writes.
        cached = {"provider": "anthropic", "model": "claude-sonnet-4-5", "input_tokens": 10_000, "cost_usd": 0.5}
        await pub.batch(
            c["workspace_id"],
            [
                usage_event(
                    **cached,
                    cached_input_tokens=1_000,
                    cache_creation_input_tokens=4_000,
                    cache_creation_1h_input_tokens=1_500,
                    service_tier="batch",
                    reservation_id="rsv_c1",
                ),
                usage_event(**cached, cache_creation_input_tokens=2_000, service_tier="priority"),
                usage_event(**cached),
            ],
        )
    async with serving([create_service(iso.settings(RollupSettings, batch_timeout_ms=50))]) as client:

        async def drained() -> bool:
            return await lag(iso) == 0

        await eventually(drained, timeout=30)
        yield World(client, a, b, c)


async def test_usage_refuses_missing_ingest_only_and_unknown_keys(world: World) -> None:
    assert (await world.client.get("/v1/usage")).status_code == 401
    assert (await world.client.get("/v1/usage", headers=auth("ssk_read_nope"))).status_code == 401
    for path in ("/v1/usage", "/v1/export?format=csv", "/v1/findings"):
        r = await world.client.get(path, headers=auth(world.a["ingest"]))
        assert r.status_code == 403, path
        assert "b-only" not in r.text


async def test_a_workspace_sees_only_its_own_data_everywhere(world: World) -> None:
    b_usage = await world.client.get("/v1/usage", params={"group_by": "feature"}, headers=auth(world.b["read"]))
    assert [(r["feature"], r["requests"]) for r in b_usage.json()["rows"]] == [("b-only", 1)]
    # Naming the other workspace changes nothing: the workspace comes from the key alone.
    a_usage = await world.client.get(
        "/v1/usage",
        params={"group_by": "feature", "workspace_id": world.b["workspace_id"]},
        headers=auth(world.a["read"]),
    )
    assert sorted(r["feature"] for r in a_usage.json()["rows"]) == ["chat", "docs-qa", "evals", "triage"]
    a_export = await world.client.get("/v1/export", params={"format": "json"}, headers=auth(world.a["admin"]))
    assert world.b["workspace_id"] not in a_export.text and "b-only" not in a_export.text
    b_findings = await world.client.get("/v1/findings", headers=auth(world.b["read"]))
    assert b_findings.json()["findings"] == []


async def test_usage_filters_with_several_values_and_groups_by_several_dimensions(world: World) -> None:
    r = await world.client.get(
        "/v1/usage",
        params=[("group_by", "model,task_type"), ("feature", "triage"), ("feature", "evals")],
        headers=auth(world.a["read"]),
    )
    body = r.json()
    assert [(x["model"], x["task_type"], x["requests"], x["cost_usd"]) for x in body["rows"]] == [
        ("gpt-4o", "classification", 100, "0.300000000"),  # 100 * (1000*2.5e-6 + 50*1e-5)
        ("gpt-4o-mini", "evaluation", 100, "0.210000000"),  # 100 * (10000*1.5e-7 + 1000*6e-7)
    ]
    assert body["totals"]["requests"] == 200 and body["totals"]["cost_usd"] == "0.510000000"
    assert datetime.fromisoformat(body["watermark"]) > datetime.now(UTC) - timedelta(minutes=5)
    bad = await world.client.get("/v1/usage", params={"group_by": "prompt"}, headers=auth(world.a["read"]))
    assert bad.status_code == 422


async def test_usage_with_top_keeps_the_costliest_series_and_sums_the_rest_with_the_same_totals(world: World) -> None:
    params = {"group_by": "day,feature"}
    full = (await world.client.get("/v1/usage", params=params, headers=auth(world.a["read"]))).json()
    assert "top" not in full and "other_series" not in full and all("other" not in r for r in full["rows"])
    topped = await world.client.get("/v1/usage", params={**params, "top": "2"}, headers=auth(world.a["read"]))
    assert topped.status_code == 200, topped.text
    body = topped.json()
    assert body["top"] == 2 and body["other_series"] == 2
    assert body["totals"] == full["totals"]
    costs: dict[str, Decimal] = {}
    for row in full["rows"]:
        costs[row["feature"]] = costs.get(row["feature"], Decimal(0)) + Decimal(row["cost_usd"])
    dearest = sorted(costs, key=lambda f: (-costs[f], f))[:2]
    assert {r["feature"] for r in body["rows"] if not r["other"]} == set(dearest)
    rest = [r for r in body["rows"] if r["other"]]
    assert rest and all(r["feature"] is None for r in rest)
    assert sum(Decimal(r["cost_usd"]) for r in rest) == sum(costs[f] for f in costs if f not in dearest)
    everything = await world.client.get("/v1/usage", params={**params, "top": "4"}, headers=auth(world.a["read"]))
    assert everything.json()["other_series"] == 0
    assert [{k: v for k, v in r.items() if k != "other"} for r in everything.json()["rows"]] == full["rows"]


@pytest.mark.parametrize("top", ["0", "1001", "-1", "1.5", "abc", "", "\u00b2", "99999"])
async def test_usage_refuses_a_top_outside_1_to_1000_with_a_precise_message(world: World, top: str) -> None:
    r = await world.client.get("/v1/usage", params={"group_by": "feature", "top": top}, headers=auth(world.a["read"]))
    assert r.status_code == 422
    assert r.json() == {"error": "invalid_top", "message": "top is a whole number of series from 1 to 1000"}


async def test_usage_groupings_answer_each_grouping_as_usage_with_the_same_top(world: World) -> None:
    sets = ["model", "feature", "day,model", "customer_id"]
    params: list[tuple[str, str]] = [("group_by", g) for g in sets] + [("top", "2"), ("feature", "triage")]
    params += [("feature", "evals"), ("feature", "chat")]
    r = await world.client.get("/v1/usage/groupings", params=tuple(params), headers=auth(world.a["read"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["top"] == 2 and [g["group_by"] for g in body["groupings"]] == [s.split(",") for s in sets]
    filters = [("feature", "triage"), ("feature", "evals"), ("feature", "chat")]
    for grouping in body["groupings"]:
        one = await world.client.get(
            "/v1/usage",
            params=[("group_by", ",".join(grouping["group_by"])), ("top", "2"), *filters],
            headers=auth(world.a["read"]),
        )
        assert grouping["rows"] == one.json()["rows"]
        assert grouping["other_series"] == one.json()["other_series"]
        assert body["totals"] == one.json()["totals"]
        assert body["unknown_models"] == one.json()["unknown_models"]
    assert body["groupings"][1]["other_series"] == 1  # three features asked for, two kept
    assert world.b["workspace_id"] not in r.text


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ([("top", "3")], "invalid_group_by"),
        ([("group_by", "model"), ("group_by", "prompt"), ("top", "3")], "invalid_group_by"),
        ([("group_by", "model"), ("group_by", ""), ("top", "3")], "invalid_group_by"),
        ([("group_by", "day,model"), ("group_by", "model,day"), ("top", "3")], "invalid_group_by"),
        (
            [("group_by", g) for g in ("model", "feature", "route", "task_type", "day", "provider", "customer_id")]
            + [("group_by", "service_tier"), ("group_by", "customer_plan"), ("top", "3")],
            "invalid_group_by",
        ),
        ([("group_by", "model"), ("top", "0")], "invalid_top"),
        ([("group_by", "model")], "invalid_request"),
    ],
)
async def test_usage_groupings_refuse_bad_groupings_and_tops(
    world: World, params: list[tuple[str, str]], error: str
) -> None:
    r = await world.client.get("/v1/usage/groupings", params=tuple(params), headers=auth(world.a["read"]))
    assert r.status_code == 422 and r.json()["error"] == error, r.text


async def test_export_streams_every_event_and_rollup_row_as_csv_and_json(world: World) -> None:
    r = await world.client.get("/v1/export", params={"format": "csv"}, headers=auth(world.a["read"]))
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    kinds = [row["record_type"] for row in rows]
    assert kinds == ["event"] * 211 + ["daily"] * 4
    assert len({row["event_id"] for row in rows if row["record_type"] == "event"}) == 211
    assert sum(int(row["requests"]) for row in rows if row["record_type"] == "daily") == 211
    j = await world.client.get("/v1/export", params={"format": "json"}, headers=auth(world.a["read"]))
    doc = json.loads(j.text)
    assert doc["workspace_id"] == world.a["workspace_id"]
    assert (len(doc["events"]), len(doc["daily"])) == (211, 4)
    assert {e["event_id"] for e in doc["events"]} == {row["event_id"] for row in rows if row["event_id"]}
    assert (
        await world.client.get("/v1/export", params={"format": "xml"}, headers=auth(world.a["read"]))
    ).status_code == 422


async def test_findings_name_each_kind_of_waste_with_its_evidence_and_monthly_saving(world: World) -> None:
    r = await world.client.get("/v1/findings", headers=auth(world.a["read"]))
    assert r.status_code == 200
    body = r.json()
    assert body["observed_days"] == 1  # all usage is from today: the window's savings are scaled by 30
    got = [(f["kind"], f["estimated_monthly_saving_usd"]) for f in body["findings"]]
    assert got == [
        ("free_tier_subsidy", "25.00"),  # 1 USD in 1 day = 30 USD/month, minus the 5 USD allowance
        ("wrong_model_tier", "8.46"),  # (0.30 - 100*(1000*1.5e-7 + 50*6e-7)) * 30 = (0.30 - 0.018) * 30
        ("batchable_workload", "3.15"),  # (0.21 - 100*(10000*7.5e-8 + 1000*3e-7)) * 30 = 0.105 * 30
        ("rag_bloat", "3.00"),  # half of 10*20000 uncached tokens * 1e-6, * 30
    ]
    assert body["total_estimated_monthly_saving_usd"] == "39.61"
    by_kind = {f["kind"]: f["evidence"] for f in body["findings"]}
    assert by_kind["wrong_model_tier"]["suggested_model"] == "gpt-4o-mini"
    assert by_kind["wrong_model_tier"]["requests"] == 100
    assert by_kind["free_tier_subsidy"]["customer_id"] == "cust-free"
    assert by_kind["rag_bloat"]["input_output_ratio"] == 200.0
    assert by_kind["batchable_workload"]["task_type"] == "evaluation"


async def test_usage_and_export_carry_cache_writes_and_the_service_tier(world: World) -> None:
    read = auth(world.c["read"])
    r = await world.client.get("/v1/usage", params={"group_by": "service_tier"}, headers=read)
    body = r.json()
    assert [
        (x["service_tier"], x["requests"], x["cache_creation_input_tokens"], x["cache_creation_1h_input_tokens"])
        for x in body["rows"]
    ] == [("", 1, 0, 0), ("batch", 1, 4_000, 1_500), ("priority", 1, 2_000, 0)]
    totals = body["totals"]
    assert (totals["requests"], totals["cached_input_tokens"], totals["cache_creation_input_tokens"]) == (
        3,
        1_000,
        6_000,
    )
    assert totals["cache_creation_1h_input_tokens"] == 1_500
    only = await world.client.get(
        "/v1/usage", params=[("service_tier", "priority"), ("service_tier", "scale")], headers=read
    )
    assert only.json()["totals"]["requests"] == 1 and only.json()["totals"]["cache_creation_input_tokens"] == 2_000

    csv_rows = list(
        csv.DictReader(io.StringIO((await world.client.get("/v1/export", params={"format": "csv"}, headers=read)).text))
    )
    events = {row["service_tier"]: row for row in csv_rows if row["record_type"] == "event"}
    assert (events["batch"]["cache_creation_input_tokens"], events["batch"]["cache_creation_1h_input_tokens"]) == (
        "4000",
        "1500",
    )
    assert events["batch"]["reservation_id"] == "rsv_c1" and events[""]["reservation_id"] == ""
    daily = sorted(
        (row["service_tier"], row["cache_creation_input_tokens"]) for row in csv_rows if row["record_type"] == "daily"
    )
    assert daily == [("", "0"), ("batch", "4000"), ("priority", "2000")]
    doc = json.loads((await world.client.get("/v1/export", params={"format": "json"}, headers=read)).text)
    assert sum(e["cache_creation_input_tokens"] for e in doc["events"]) == 6_000
    assert sum(d["cache_creation_1h_input_tokens"] for d in doc["daily"]) == 1_500


def test_a_usage_row_is_laid_out_as_its_response_model_lays_it_out() -> None:
    row: dict[str, Any] = {
        "day": "2026-12-01",
        "model": "gpt-4o",
        "customer_id": "c-ü",
        **{m: 7 for m in MEASURES},
        "cost_usd": Decimal("0.120000000"),
    }
    expected = api.UsageRow.model_validate(api._jsonable(row)).model_dump(mode="json")
    assert api._row_out(row) == expected
    assert list(api._row_out(row)) == list(expected)
