"""rollup's scheduled refresh from SPENDSTREAM_PRICES_URL (a local HTTP server serving tables) and its price API:
a harmless change becomes a version from the next day; a table that zeroes a price, moves one more than 10x
or drops a model in use is held until a price admin approves it; tenant rates are set, read and deleted by the
workspace's own admin key."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

import pytest

from spendstream.rollup.app import create_service
from spendstream.rollup.settings import RollupSettings
from tests.rollup.kafka import lag, publisher
from tests.support import Isolation, auth, create_workspace, eventually, serving, usage_event

pytestmark = pytest.mark.integration


class TableServer:
    """Serves `body` at /prices.json, as a price-table host would; `body` may change between fetches."""

    def __init__(self) -> None:
        self.body = b""
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.fetches += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/prices.json?token=secret"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def serve(self, table: dict[str, Any]) -> None:
        self.body = json.dumps(table).encode()

    def __enter__(self) -> TableServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()


@pytest.fixture
def tables() -> Iterator[TableServer]:
    with TableServer() as server:
        yield server


def shipped() -> dict[str, Any]:
    text = resources.files("spendstream.common").joinpath("data", "litellm_model_prices.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


async def test_the_daily_refresh_adds_a_version_and_holds_a_suspicious_one_until_approved(
    iso: Isolation, tables: TableServer
) -> None:
    operator, tenant = await create_workspace(iso, "operator"), await create_workspace(iso, "tenant")
    first = shipped()
    first["gpt-4o"]["input_cost_per_token"] = 5e-06  # twice the price: an ordinary change
    tables.serve(first)
    settings = iso.settings(
        RollupSettings,
        batch_timeout_ms=50,
        prices_url=tables.url,
        prices_refresh_interval_seconds=0.5,
        price_admin_workspaces=operator["workspace_id"],
    )
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()  # as the refresh sees it, unless ...
    async with serving([create_service(settings)]) as client:
        # A model in use: an event of it is stored.
        async with publisher(iso) as pub:
            event = usage_event(provider="anthropic", model="claude-haiku-4-5")
            await pub.batch(tenant["workspace_id"], [event])

        async def stored() -> bool:
            return await lag(iso) == 0

        await eventually(stored, timeout=30)

        async def versions() -> list[dict[str, Any]] | None:
            answer = await client.get("/v1/prices/versions", headers=auth(operator["admin"]))
            assert answer.status_code == 200
            found: list[dict[str, Any]] = answer.json()["versions"]
            return found or None

        (added,) = await eventually(versions, timeout=30)
        # ... midnight UTC passed between here and the refresh, which then took the day after.
        tomorrow_then = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
        assert added["status"] == "active" and added["effective_from"] in {tomorrow, tomorrow_then}
        assert added["source"] == tables.url.split("?")[0]  # the query (a token, say) is never stored

        # The same table, fetched again and again, adds nothing.
        fetched = tables.fetches
        await eventually(lambda: _at_least(tables, fetched + 2), timeout=30)
        assert len(await versions() or []) == 1

        suspicious = json.loads(json.dumps(first))
        suspicious["gpt-4o-mini"]["output_cost_per_token"] = 0  # to zero
        suspicious["gpt-4.1"]["input_cost_per_token"] *= 20  # more than 10x
        del suspicious["claude-haiku-4-5"]  # a model in use
        del suspicious["gpt-3.5-turbo-16k"]  # removed, but not in use: no reason to hold
        tables.serve(suspicious)

        async def held() -> list[dict[str, Any]] | None:
            answer = await client.get("/v1/prices/held", headers=auth(operator["admin"]))
            assert answer.status_code == 200
            found: list[dict[str, Any]] = answer.json()
            return found or None

        (waiting,) = await eventually(held, timeout=30)
        reasons = {(r["kind"], r["key"], r["field"]) for r in waiting["hold_reasons"]}
        assert reasons == {
            ("zero", "gpt-4o-mini", "output_cost_per_token"),
            ("moved_10x", "gpt-4.1", "input_cost_per_token"),
            ("removed_in_use", "anthropic/claude-haiku-4-5", None),
        }
        assert "spendstream_rollup_price_versions_held 1.0" in (await client.get("/metrics")).text
        # Only a price admin sees or approves held tables.
        assert (await client.get("/v1/prices/held", headers=auth(tenant["admin"]))).status_code == 403
        path = f"/v1/prices/held/{waiting['version_id']}/approve"
        assert (await client.post(path, headers=auth(tenant["admin"]))).status_code == 403
        assert (await client.post(path, headers=auth(operator["read"]))).status_code == 403
        assert (await client.post("/v1/prices/held/nope/approve", headers=auth(operator["admin"]))).status_code == 404

        approved = await client.post(path, headers=auth(operator["admin"]))
        assert approved.status_code == 200 and approved.json()["status"] == "active"
        assert approved.json()["approved_by"].startswith("key:")
        assert await held() is None
        assert "spendstream_rollup_price_versions_held 0.0" in (await client.get("/metrics")).text
        statuses = [(v["version_id"], v["status"]) for v in await versions() or []]
        assert statuses == [(added["version_id"], "active"), (waiting["version_id"], "active")]


async def _at_least(tables: TableServer, fetches: int) -> bool:
    return tables.fetches >= fetches


async def test_an_admin_sets_reads_and_deletes_its_own_workspace_rates(iso: Isolation) -> None:
    a, b = await create_workspace(iso, "a"), await create_workspace(iso, "b")
    async with serving([create_service(iso.settings(RollupSettings))]) as client:
        body = {"provider": "openai", "model": "gpt-4o*", "effective_from": "2026-03-01", "kind": "discount"}
        put = await client.put(
            "/v1/prices/rates/enterprise", json={**body, "percent": "12.5"}, headers=auth(a["admin"])
        )
        assert put.status_code == 200
        assert put.json()["workspace_id"] == a["workspace_id"] and put.json()["percent"] == "12.5"
        fixed = {"model": "ours", "effective_from": "2026-03-01", "kind": "fixed", "input": "1e-6", "output": "2e-6"}
        assert (await client.put("/v1/prices/rates/own", json=fixed, headers=auth(a["admin"]))).status_code == 200

        listed = (await client.get("/v1/prices/rates", headers=auth(a["admin"]))).json()
        assert [r["rate_id"] for r in listed["rates"]] == ["enterprise", "own"]
        # Another workspace sees none of them and cannot delete them; a read key cannot set one.
        assert (await client.get("/v1/prices/rates", headers=auth(b["admin"]))).json()["rates"] == []
        assert (await client.delete("/v1/prices/rates/enterprise", headers=auth(b["admin"]))).status_code == 404
        assert (
            await client.put("/v1/prices/rates/x", json={**body, "percent": "5"}, headers=auth(a["read"]))
        ).status_code == 403

        invalid = await client.put("/v1/prices/rates/x", json={**body, "percent": "150"}, headers=auth(a["admin"]))
        assert invalid.status_code == 422 and "at most 100 percent" in invalid.text
        no_output = {**fixed, "output": None}
        invalid = await client.put("/v1/prices/rates/x", json=no_output, headers=auth(a["admin"]))
        assert invalid.status_code == 422 and "needs input and output" in invalid.text
        bad_id = await client.put("/v1/prices/rates/no%20spaces", json=fixed, headers=auth(a["admin"]))
        assert bad_id.status_code == 422

        assert (await client.delete("/v1/prices/rates/enterprise", headers=auth(a["admin"]))).status_code == 204
        listed = (await client.get("/v1/prices/rates", headers=auth(a["admin"]))).json()
        assert [r["rate_id"] for r in listed["rates"]] == ["own"]
