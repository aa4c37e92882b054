"""rollup as a real OS process: SIGKILL between the ClickHouse insert and the offset commit, and SIGTERM in
the middle of a batch. The process owns its chDB directory; results are read over its HTTP API, or, once it
has exited, by opening the directory in a separate process."""

from __future__ import annotations

import argparse
import csv
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from spendstream.rollup import cli
from tests.rollup.kafka import events, lag, publisher
from tests.support import Isolation, ServiceProcess, auth, create_workspace, eventually

pytestmark = pytest.mark.integration


def _stored(iso: Isolation, workspace_id: str) -> tuple[int, int]:
    """(raw rows, rollup requests) in the exited process's chDB directory, read from another process."""
    code = (
        "import sys, clickhouse_connect\n"
        "c = clickhouse_connect.get_client(dsn=sys.argv[1])\n"
        "ws, db = sys.argv[2], sys.argv[3]\n"
        "raw = c.query(f\"SELECT count() FROM {db}.usage_events WHERE workspace_id = '{ws}'\").result_rows\n"
        "agg = c.query(f\"SELECT sum(requests) FROM {db}.usage_daily WHERE workspace_id = '{ws}'\").result_rows\n"
        "print(raw[0][0], agg[0][0])\n"
    )
    url = f"chdb://{(iso.data_dir / 'clickhouse').resolve()}"
    out = subprocess.run(
        [sys.executable, "-c", code, url, workspace_id, iso.database], check=True, capture_output=True, text=True
    ).stdout.split()
    return int(out[0]), int(out[1])


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


async def _caught_up(iso: Isolation) -> None:
    async def done() -> bool:
        return await lag(iso) == 0

    await eventually(done, timeout=30)


async def test_sigkill_between_insert_and_commit_redelivers_and_stores_nothing_twice(
    iso: Isolation, tmp_path: Path
) -> None:
    ws = await create_workspace(iso)
    env = {**iso.env(), "ROLLUP_TEST_FAULT": "kill_after_insert"}
    faulty = ServiceProcess("rollup", env, tmp_path / "faulty.log", module="tests.rollup.faulty_rollup")
    faulty.start()
    async with publisher(iso) as pub:
        await pub.batch(ws["workspace_id"], events(10, cost_usd=0.2))
    assert faulty._proc.wait(timeout=60) == -9
    faulty._proc = None
    # Killed after the write, before the commit: all ten stored, the record still uncommitted.
    assert _stored(iso, ws["workspace_id"]) == (10, 10)
    assert await lag(iso) == 1

    again = ServiceProcess("rollup", iso.env(), tmp_path / "rollup.log")
    again.start()
    try:
        await _caught_up(iso)
        async with httpx.AsyncClient(base_url=again.url) as client:
            usage = (await client.get("/v1/usage", headers=auth(ws["read"]))).json()
            metrics = (await client.get("/metrics")).text
        assert usage["totals"]["requests"] == 10
        assert usage["totals"]["cost_usd"] == "2.000000000"
        # The redelivered record was really processed again, and every event found already stored.
        assert _metric(metrics, "spendstream_rollup_events_duplicate_total") == 10
        assert _metric(metrics, "spendstream_rollup_events_stored_total") == 0

        # The CLI twin of /v1/export, against the same process.
        out = tmp_path / "export.csv"
        args = argparse.Namespace(url=again.url, key=ws["read"], format="csv", output=out, quiet=True)
        assert cli.export_data(args) == 0
        with out.open() as fh:
            records: list[dict[str, Any]] = list(csv.DictReader(fh))
        assert [r["record_type"] for r in records] == ["event"] * 10 + ["daily"]
        assert records[-1]["requests"] == "10" and records[-1]["cost_usd"] == "2.000000000"
    finally:
        again.terminate()
    assert _stored(iso, ws["workspace_id"]) == (10, 10)


async def test_a_view_part_lost_in_a_crash_is_repaired_from_the_redelivery_within_seconds(
    iso: Isolation, tmp_path: Path
) -> None:
    ws = await create_workspace(iso)
    env = {**iso.env(), "ROLLUP_TEST_FAULT": "lose_view_part"}
    faulty = ServiceProcess("rollup", env, tmp_path / "faulty.log", module="tests.rollup.faulty_rollup")
    faulty.start()
    async with publisher(iso) as pub:
        await pub.batch(ws["workspace_id"], events(10, cost_usd=0.2))
    assert faulty._proc.wait(timeout=60) == -9
    faulty._proc = None
    # The raw part is durable, the view part gone, the record uncommitted.
    assert _stored(iso, ws["workspace_id"]) == (10, 0)

    # The periodic reconcile is an hour away: only the repair of redelivered days can fix the rollup.
    again = ServiceProcess(
        "rollup", {**iso.env(), "SPENDSTREAM_RECONCILE_INTERVAL_SECONDS": "3600"}, tmp_path / "rollup.log"
    )
    again.start()
    try:
        async with httpx.AsyncClient(base_url=again.url) as client:

            async def repaired() -> dict[str, Any] | None:
                totals: dict[str, Any] = (await client.get("/v1/usage", headers=auth(ws["read"]))).json()["totals"]
                return totals if totals["requests"] == 10 else None

            totals = await eventually(repaired, timeout=30)
            assert totals["cost_usd"] == "2.000000000"
            assert _metric((await client.get("/metrics")).text, "spendstream_rollup_reconcile_corrections_total") == 1
    finally:
        again.terminate()
    assert _stored(iso, ws["workspace_id"]) == (10, 10)


async def test_sigterm_mid_batch_finishes_the_batch_commits_and_exits_cleanly(iso: Isolation, tmp_path: Path) -> None:
    ws = await create_workspace(iso)
    marker = tmp_path / "batch-started"
    env = {**iso.env(), "ROLLUP_TEST_FAULT": "slow_batch", "ROLLUP_TEST_MARKER": str(marker)}
    proc = ServiceProcess("rollup", env, tmp_path / "rollup.log", module="tests.rollup.faulty_rollup")
    proc.start()
    async with publisher(iso) as pub:
        await pub.batch(ws["workspace_id"], events(10, cost_usd=0.3))

    async def started() -> bool:
        return marker.exists()

    await eventually(started, timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught, so the exit status says "SIGTERM".
    assert proc.terminate() == -signal.SIGTERM
    assert await lag(iso) == 0
    assert _stored(iso, ws["workspace_id"]) == (10, 10)
    log = (tmp_path / "rollup.log").read_text()
    assert "service failed to stop cleanly" not in log and "Traceback" not in log
