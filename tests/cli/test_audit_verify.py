"""`spendstream audit verify WORKSPACE` asks rollup to verify the workspace's audit chain: it prints the verdict
and exits 0 when the chain holds, 1 naming the first bad record when it does not, 2 when it could not ask."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn

from spendstream.cli.__main__ import main
from spendstream.common.service import build_http_app
from spendstream.rollup.app import create_service as create_rollup
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.settings import RollupSettings
from tests.rollup.test_audit_api import trail
from tests.support import Isolation, create_workspace, eventually, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TOKEN = "internal-token-of-the-cli-tests"


@contextmanager
def rollup_at(iso: Isolation) -> Iterator[str]:
    """rollup behind a real uvicorn (its own thread and event loop), as the operator's CLI reaches it."""
    app = build_http_app([create_rollup(iso.settings(RollupSettings, batch_timeout_ms=50, internal_token=TOKEN))])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="rollup-under-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 90
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "rollup did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


async def test_audit_verify_passes_on_an_intact_chain_and_names_the_first_bad_record(
    iso: Isolation, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = await create_workspace(iso)
    workspace_id = ws["workspace_id"]
    client = clickhouse_client(iso.stack.clickhouse)

    async def stored() -> bool:
        result = client.query(
            f"SELECT count() FROM {iso.database}.audit_records WHERE workspace_id = {{ws:String}}",
            parameters={"ws": workspace_id},
        )
        return int(result.result_rows[0][0]) == 4

    with rollup_at(iso) as url:
        async with trail(iso, "ingest") as ingest:
            for i in range(4):
                await ingest.record(
                    workspace_id=workspace_id,
                    actor_kind="key",
                    actor_id=f"key_{i}",
                    action="keys.issue",
                    outcome="allowed",
                )
        await eventually(stored, timeout=30)

        def verify(*extra: str) -> int:
            return main(["audit", "verify", workspace_id, "--url", url, *extra])

        assert await asyncio.to_thread(verify, "--internal-token", TOKEN) == 0
        out = capsys.readouterr().out
        assert json.loads(out) | {"head_hash": None} == {
            "ok": True,
            "records": 4,
            "first_bad": None,
            "first_seq": 1,
            "last_seq": 4,
            "head_hash": None,
        }
        # With the workspace's admin key, the same verdict.
        assert await asyncio.to_thread(verify, "--key", ws["admin"], "--internal-token", "") == 0
        capsys.readouterr()

        client.command(
            f"ALTER TABLE {iso.database}.audit_records DELETE WHERE workspace_id = {{ws:String}} AND seq = 2",
            parameters={"ws": workspace_id},
            settings={"mutations_sync": 2},
        )
        assert await asyncio.to_thread(verify, "--internal-token", TOKEN) == 1
        captured = capsys.readouterr()
        assert json.loads(captured.out)["first_bad"] == {"seq": 2, "reason": "missing"}
        assert "seq 2: missing" in captured.err

        assert await asyncio.to_thread(verify, "--internal-token", "wrong") == 2
        assert "HTTP 401" in capsys.readouterr().err
        assert await asyncio.to_thread(verify, "--internal-token", "", "--key", "") == 2
        assert "needs the internal token" in capsys.readouterr().err
