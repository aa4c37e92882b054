"""A chDB directory of its own for the re-pricing crash test, worked from separate processes (the test's own
process holds the session's chDB directory, and a process opens one directory only):

  python -m tests.rollup.recompute_store seed URL DB EVENTS.json PRICES.json   store events as the writer would
  python -m tests.rollup.recompute_store dump URL DB WS FROM TO                print stored costs and rollup as JSON
  python -m tests.rollup.recompute_store slow ARGS...                          `spendstream ARGS` with each partition's
                                                                               settling slowed, so a test can kill
                                                                               it between its two steps
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections import defaultdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from spendstream.common.events import sealed_events
from spendstream.common.prices import PriceTable
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.queries import UsageQueries
from spendstream.rollup.recompute import Repricer
from spendstream.rollup.schema import migrate
from spendstream.rollup.writes import ClickHouseWriter, StoredBatch


def seed(url: str, db: str, events_path: str, prices_path: str) -> None:
    client = clickhouse_client(url)
    migrate(client, db, 12)
    writer = ClickHouseWriter(client, db, PriceTable(json.loads(Path(prices_path).read_text())))
    by_workspace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for workspace_id, event in json.loads(Path(events_path).read_text()):
        by_workspace[workspace_id].append(event)
    for workspace_id, events in by_workspace.items():
        batch = StoredBatch.of(workspace_id, uuid.uuid4().hex, datetime.now(UTC), sealed_events(events))
        writer.insert_new([batch], writer.encode([batch]))


def dump(url: str, db: str, workspace_id: str, start: str, end: str) -> None:
    client = clickhouse_client(url)
    events = client.query(
        f"SELECT event_id, toString(cost_usd), toString(cost_source), price_ref FROM {db}.usage_events FINAL "
        "WHERE workspace_id = {ws:String}",
        parameters={"ws": workspace_id},
    ).result_rows
    rows = UsageQueries(client, db).usage(
        workspace_id, date.fromisoformat(start), date.fromisoformat(end), ["day", "model"], {}
    )
    done = client.query(f"SELECT count() FROM {db}.price_recompute_days WHERE step = 'settled'").result_rows[0][0]
    jobs = client.query(f"SELECT job_id, toString(state) FROM {db}.price_recompute_jobs FINAL").result_rows
    print(
        json.dumps(
            {
                "events": {e: [c, s, r] for e, c, s, r in events},
                "usage": {f"{r['day']}|{r['model']}": [r["requests"], str(r["cost_usd"])] for r in rows},
                "days_done": int(done),
                "jobs": {j: s for j, s in jobs},
            }
        )
    )


def slow(argv: list[str]) -> int:
    from spendstream.cli.__main__ import main

    settle = Repricer.settle

    def slowly(self: Repricer, *args: Any, **kwargs: Any) -> int:
        # The partition's raw rows are re-priced, its rollup not yet: say so, and give the test time to kill.
        print(json.dumps({"settling": [u.day.isoformat() for u in args[1]]}), file=sys.stderr, flush=True)
        time.sleep(1.5)
        fixed = settle(self, *args, **kwargs)
        time.sleep(1.5)
        return fixed

    Repricer.settle = slowly  # type: ignore[method-assign]
    return main(argv)


if __name__ == "__main__":
    command, rest = sys.argv[1], sys.argv[2:]
    if command == "seed":
        seed(*rest)
    elif command == "dump":
        dump(*rest)
    elif command == "slow":
        sys.exit(slow(rest))
    else:
        sys.exit(f"unknown command {command}")
