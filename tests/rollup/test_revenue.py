"""Revenue records through the API: per-record errors like /v1/events (index, field, code, never the value), the
admin key only, a CSV import that names line and column and imports all or nothing, corrections that replace,
and revenue in the workspace's export."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from spendstream.cli.__main__ import main
from spendstream.rollup.app import create_service
from spendstream.rollup.revenue import parse_csv
from spendstream.rollup.settings import RollupSettings
from tests.support import Isolation, ServiceProcess, Stack, auth, create_workspace, new_isolation, provision, serving

pytestmark = pytest.mark.integration

SECRET_VALUE = "secret-value-9d2c"
YEAR = datetime.now(UTC).year  # recent: revenue expires with the retention


@dataclass
class World:
    client: httpx.AsyncClient
    ws: dict[str, str]

    async def records(self) -> dict[str, dict[str, Any]]:
        r = await self.client.get(
            "/v1/revenue", params={"from": f"{YEAR}-01", "to": f"{YEAR}-12"}, headers=auth(self.ws["read"])
        )
        return {f"{x['source']}/{x['source_id']}": x for x in r.json()["records"]}


@pytest.fixture(scope="module")
async def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    iso = new_isolation(stack, tmp_path_factory.mktemp("revenue"))
    await provision(iso)
    ws = await create_workspace(iso, "revenue")
    async with serving([create_service(iso.settings(RollupSettings))]) as client:
        yield World(client, ws)


def _record(**fields: Any) -> dict[str, Any]:
    base = {"source": "billing", "source_id": "inv-1", "customer_id": "c1", "amount": "10.50", "currency": "USD"}
    return base | {"month": f"{YEAR}-03"} | fields


async def test_only_the_admin_key_writes_revenue_and_a_read_key_reads_it(world: World) -> None:
    body = {"records": [_record()]}
    for scope in ("read", "ingest"):
        r = await world.client.post("/v1/revenue", json=body, headers=auth(world.ws[scope]))
        assert r.status_code == 403, scope
    assert (await world.client.post("/v1/revenue", json=body)).status_code == 401
    assert (await world.client.post("/v1/revenue", json=body, headers=auth(world.ws["admin"]))).json()["accepted"] == 1
    assert (await world.records())["billing/inv-1"]["amount"] == "10.500000000"


async def test_each_bad_record_is_refused_by_index_and_field_without_its_value_and_the_rest_is_stored(
    world: World,
) -> None:
    records = [
        _record(source_id="ok-1", amount="-3.25", period_start=f"{YEAR}-03-05", period_end=f"{YEAR}-04-04", month=None),
        _record(source_id="bad-currency", currency=SECRET_VALUE),
        _record(source_id="bad-amount", amount=SECRET_VALUE),
        _record(source_id="both-periods", period_start=f"{YEAR}-03-01", period_end=f"{YEAR}-03-31"),
        _record(source_id="ok-2", customer_plan="pro"),
    ]
    r = await world.client.post(
        "/v1/revenue",
        json={"records": [{k: v for k, v in rec.items() if v is not None} for rec in records]},
        headers=auth(world.ws["admin"]),
    )
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 2
    assert [(e["index"], e["field"], e["code"]) for e in body["rejected"]] == [
        (1, "currency", "string_pattern_mismatch"),
        (2, "amount", "decimal_parsing"),
        (3, "record", "value_error"),
    ]
    assert SECRET_VALUE not in r.text
    stored = await world.records()
    assert (
        stored["billing/ok-1"]["period_start"] == f"{YEAR}-03-05" and stored["billing/ok-1"]["amount"] == "-3.250000000"
    )
    assert stored["billing/ok-2"]["customer_plan"] == "pro"
    assert not {"billing/bad-currency", "billing/bad-amount", "billing/both-periods"} & set(stored)


async def test_the_same_source_id_again_replaces_the_record(world: World) -> None:
    admin = auth(world.ws["admin"])
    await world.client.post("/v1/revenue", json={"records": [_record(source_id="fix", amount="100")]}, headers=admin)
    await world.client.post("/v1/revenue", json={"records": [_record(source_id="fix", amount="80")]}, headers=admin)
    fixed = [r for key, r in (await world.records()).items() if key == "billing/fix"]
    assert [r["amount"] for r in fixed] == ["80.000000000"]


async def test_a_csv_with_errors_names_line_and_column_and_imports_nothing(world: World) -> None:
    text = (
        "source,source_id,customer_id,amount,currency,month\n"
        f"csv,row-ok,c7,12.00,USD,{YEAR}-04\n"
        f"csv,row-bad,c8,{SECRET_VALUE},USD,{YEAR}-04\n"
        f"csv,row-bad-month,c9,1.00,USD,{YEAR}-13\n"
    )
    r = await world.client.post("/v1/revenue/import", json={"csv": text}, headers=auth(world.ws["admin"]))
    assert r.status_code == 422
    assert [(d["field"], d["code"]) for d in r.json()["details"]] == [
        ("line.3.amount", "decimal"),
        ("line.4.month", "string_pattern_mismatch"),
    ]
    assert SECRET_VALUE not in r.text
    assert "csv/row-ok" not in await world.records()  # nothing half-imported

    good = f"source,source_id,customer_id,customer_plan,amount,currency,month\ncsv,row-ok,c7,pro,12.00,EUR,{YEAR}-04\n"
    r = await world.client.post("/v1/revenue/import", json={"csv": good}, headers=auth(world.ws["admin"]))
    assert r.json() == {"imported": 1}
    assert (await world.records())["csv/row-ok"]["currency"] == "EUR"


def test_a_csv_header_without_a_required_column_or_with_an_unknown_one_is_refused_at_line_1() -> None:
    _, errors = parse_csv("source,source_id,amount,currency,month\n")
    assert [(e.line, e.field, e.code) for e in errors] == [(1, "customer_id", "header")]
    _, errors = parse_csv("source,source_id,customer_id,amount,currency,month,email\n")
    assert [(e.line, e.field, e.code, e.message) for e in errors] == [(1, "header", "header", "unknown column 'email'")]


async def test_revenue_records_are_part_of_the_export(world: World) -> None:
    r = await world.client.get("/v1/export", params={"format": "json"}, headers=auth(world.ws["admin"]))
    revenue = json.loads(r.text)["revenue"]
    assert {x["source_id"] for x in revenue} >= {"inv-1", "ok-1", "ok-2", "fix", "row-ok"}
    fix = next(x for x in revenue if x["source_id"] == "fix")
    assert (fix["record_type"], fix["amount"], fix["currency"], fix["period_start"]) == (
        "revenue",
        "80.000000000",
        "USD",
        f"{YEAR}-03-01",
    )
    c = await world.client.get("/v1/export", params={"format": "csv"}, headers=auth(world.ws["admin"]))
    rows = [row for row in csv.DictReader(io.StringIO(c.text)) if row["record_type"] == "revenue"]
    assert {row["source_id"] for row in rows} == {x["source_id"] for x in revenue}


async def test_the_cli_imports_a_csv_through_a_running_rollup_and_lists_line_errors(
    iso: Isolation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = await create_workspace(iso, "cli")
    rollup = ServiceProcess("rollup", iso.env(), tmp_path / "rollup.log")
    try:
        rollup.start(ready_timeout=180.0)  # a process start on a shared machine; the test is about the CLI
        server = ["--url", rollup.url, "--key", ws["admin"]]
        bad = tmp_path / "bad.csv"
        bad.write_text(f"source,source_id,customer_id,amount,currency,month\ncsv,r1,c1,{SECRET_VALUE},USD,{YEAR}-05\n")
        assert await asyncio.to_thread(main, ["revenue", "import", str(bad), *server]) == 2
        err = capsys.readouterr().err
        assert "line.2.amount: decimal" in err and SECRET_VALUE not in err
        good = tmp_path / "good.csv"
        good.write_text(f"source,source_id,customer_id,amount,currency,month\ncsv,r1,c1,5.00,USD,{YEAR}-05\n")
        assert await asyncio.to_thread(main, ["revenue", "import", str(good), *server]) == 0
        assert json.loads(capsys.readouterr().out) == {"imported": 1}
    finally:
        rollup.terminate()
