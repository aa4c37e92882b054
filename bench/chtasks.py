"""ClickHouse work that needs a chDB directory of its own, so it runs in its own process (one engine per process).

`python -m bench.chtasks '<json>'` with `task`:
  insert-limit    rollup's own insert (ClickHouseWriter.insert) of encoded batches, no existence check: rows/s
  prefill         N synthetic rows over many workspaces via INSERT ... SELECT FROM numbers(): seconds
  delete          the bare deletion of one workspace (ALTER TABLE ... DELETE, synchronous) on both tables
  count           rows of one workspace in both tables (apply_deleted_mask=0: physically present rows)
  finish          `delete` for some workspaces, then `count` for others, in one process
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import orjson

from bench.events import BATCH, BodyTemplate
from spendstream.common.events import validate_events
from spendstream.common.prices import bundled
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.schema import migrate
from spendstream.rollup.writes import ClickHouseWriter, StoredBatch

TABLES = ("usage_events", "usage_daily")


def _client(config: dict[str, Any]) -> Any:
    path = Path(config["path"])
    path.mkdir(parents=True, exist_ok=True)
    client = clickhouse_client(f"chdb://{path}")
    migrate(client, config["db"], 12)
    return client


def insert_limit(config: dict[str, Any]) -> dict[str, Any]:
    client = _client(config)
    events, per_insert = int(config["events"]), int(config["batch_events"])
    now = datetime.now(UTC)
    raw = orjson.loads(BodyTemplate(BATCH).body("limit"))["events"]
    validated = validate_events(raw, now, timedelta(days=400)).accepted
    template = validated
    writer = ClickHouseWriter(client, config["db"], bundled())
    inserted, spent = 0, 0.0
    while inserted < events:
        n = min(per_insert, events - inserted)
        fresh = [msgspec.structs.replace(template[j % BATCH], event_id=f"{inserted + j}") for j in range(n)]
        body = writer.encode(
            [StoredBatch("ws_limit", f"b{inserted + i}", now, fresh[i : i + BATCH]) for i in range(0, n, BATCH)]
        )
        started = time.perf_counter()
        writer.insert(body)
        spent += time.perf_counter() - started
        inserted += n
    return {"rows_per_s": inserted / spent, "rows": inserted, "seconds": spent}


def prefill(config: dict[str, Any]) -> dict[str, Any]:
    """`rows` events spread evenly over `workspaces` (ids as given), 60 days back, one insert from numbers()."""
    client = _client(config)
    ids = config["workspaces"]
    array = "[" + ",".join(f"'{w}'" for w in ids) + "]"
    started = time.perf_counter()
    client.command(
        f"INSERT INTO {config['db']}.usage_events (workspace_id, event_id, ts, ingested_at, batch_id, provider, "
        "model, input_tokens, output_tokens, cached_input_tokens, reasoning_tokens, latency_ms, cost_usd, "
        "cost_source, feature, route, task_type, customer_plan, customer_id, environment, tags) "
        f"SELECT arrayElement({array}, (number % {len(ids)}) + 1), concat('e', toString(number)), "
        "now64(3) - toIntervalSecond(number % 5184000), now64(3) - toIntervalSecond(number % 5184000), "
        "concat('b', toString(intDiv(number, 500))), ['openai','anthropic','google'][number % 3 + 1], "
        "['gpt-4o-mini','claude-3-5-sonnet-20241022','gemini-1.5-flash'][number % 3 + 1], 200 + number % 4000, "
        "50 + number % 800, 0, 0, 100 + number % 3000, toDecimal64((number % 1000) / 100000, 9), "
        "'reported', ['chat','search','summarize'][number % 3 + 1], '', '', '', "
        "concat('cust-', toString(number % 1000)), 'prod', map('feature', 'chat') "
        f"FROM numbers({int(config['rows'])})",
        settings={"max_insert_threads": 2},
    )
    return {"seconds": time.perf_counter() - started, **count_all(client, config["db"])}


def count_all(client: Any, db: str) -> dict[str, Any]:
    return {"rows": int(client.query(f"SELECT count() FROM {db}.usage_events").result_rows[0][0])}


def count(config: dict[str, Any]) -> dict[str, Any]:
    client = _client(config)
    result = {}
    for table in TABLES:
        result[table] = int(
            client.query(
                f"SELECT count() FROM {config['db']}.{table} WHERE workspace_id = {{ws:String}}",
                parameters={"ws": config["workspace"]},
                settings={"apply_deleted_mask": 0},
            ).result_rows[0][0]
        )
    return result


def delete(config: dict[str, Any]) -> dict[str, Any]:
    """The bare physical deletion of one workspace: the floor any erasure path can reach on this engine."""
    client = _client(config)
    started = time.perf_counter()
    for table in TABLES:
        client.command(
            f"ALTER TABLE {config['db']}.{table} DELETE WHERE workspace_id = {{ws:String}}",
            parameters={"ws": config["workspace"]},
            settings={"mutations_sync": 2},
        )
    seconds = time.perf_counter() - started
    left = count(config)
    return {"seconds": seconds, "left": sum(left.values())}


def finish(config: dict[str, Any]) -> dict[str, Any]:
    """After the services stopped, in one process: the bare deletions (`delete`), then rows left of `erased`."""
    deletions = [delete({**config, "workspace": ws}) for ws in config["delete"]]
    left = {ws: sum(count({**config, "workspace": ws}).values()) for ws in config["erased"]}
    return {"deletions": deletions, "left": left}


TASKS = {"insert-limit": insert_limit, "prefill": prefill, "delete": delete, "count": count, "finish": finish}

if __name__ == "__main__":
    cfg = json.loads(sys.argv[1])
    print(json.dumps(TASKS[cfg["task"]](cfg)))
