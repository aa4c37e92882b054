"""The console's page data (issue 24): the API calls each page makes, timed over a large workspace.

`python -m bench.console [--events N] [--days D] [--rounds R]`   (defaults: a smoke size, 200,000 events)

N events of one workspace over the last D days, written straight into usage_events with INSERT ... SELECT FROM
numbers() (the view builds the daily rollup as for rollup's own inserts): 7 models, 300 features (the charts'
"hundreds of series"), 5,000 customers. Then, through the real rollup routes in this process (key
authentication, the queries, JSON; no network hop), R rounds of each page's calls made at once as the browser
makes them; prints p50/p95 per page and per call. Budgets, members, keys and the audit log come from other
services whose answers do not grow with the events; they are not timed here.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka.admin import AIOKafkaAdminClient

from spendstream.common.kafka import make_broker, provision_topics
from spendstream.common.service import build_http_app
from spendstream.ingest.workspaces import ControlPlane
from spendstream.rollup.app import create_service
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.settings import RollupSettings

MODELS = (
    "gpt-4o-mini",
    "gpt-4o",
    "o3-mini",
    "claude-sonnet-4-20250514",
    "gemini-2.5-pro",
    "mistral-large-latest",
    "unpriced-model-x",
)
PROVIDERS = ("openai", "openai", "openai", "anthropic", "google", "mistral", "openai")


def pages(today: str, month_start: str, month_ago: str) -> dict[str, list[str]]:
    """What each page of the console asks for (static/js/pages/*.js), with the defaults it opens with."""
    month = f"from={month_start}&to={today}"
    return {
        "overview": [
            f"/v1/usage?{month}&group_by=model",
            f"/v1/usage?{month}&group_by=feature",
            f"/v1/usage?{month}&group_by=customer_id",
            f"/v1/usage?{month}&group_by=day,model",
        ],
        "overview (stacked by feature)": [f"/v1/usage?{month}&group_by=day,feature"],
        "explore (30 days by model)": [f"/v1/usage?from={month_ago}&to={today}&group_by=model"],
        "explore (30 days by day, model)": [f"/v1/usage?from={month_ago}&to={today}&group_by=day,model"],
        "findings": ["/v1/findings"],
    }


def prefill(url: str, db: str, workspace_id: str, events: int, days: int) -> float:
    client = clickhouse_client(url)
    first = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)
    span = days * 86400 - 1
    providers = "[" + ",".join(f"'{p}'" for p in PROVIDERS) + "]"
    models = "[" + ",".join(f"'{m}'" for m in MODELS) + "]"
    started = time.perf_counter()
    client.command(
        f"INSERT INTO {db}.usage_events (workspace_id, event_id, ts, ingested_at, batch_id, provider, model, "
        "input_tokens, output_tokens, cached_input_tokens, reasoning_tokens, cache_creation_input_tokens, "
        "cache_creation_1h_input_tokens, service_tier, latency_ms, cost_usd, cost_source, "
        "feature, route, task_type, customer_plan, customer_id, environment, tags) "
        f"SELECT '{workspace_id}', concat('e', toString(number)), "
        f"toDateTime64('{first:%Y-%m-%d %H:%M:%S}', 3, 'UTC') + toIntervalSecond((number * 7919) % {span}), "
        "now64(3), concat('b', toString(intDiv(number, 500))), "
        f"{providers}[number % {len(MODELS)} + 1], {models}[number % {len(MODELS)} + 1], "
        "200 + (number * 7919) % 20000, 50 + number % 4000, 0, 0, 0, 0, '', 100 + number % 3000, "
        "toDecimal64(((number * 13) % 1000) / 100000, 9), 'computed', "
        "concat('feature-', toString((number * 31) % 300)), '', '', '', concat('cust-', toString(number % 5000)), "
        "'prod', map() "
        f"FROM numbers({events})",
        settings={"max_insert_threads": 2},
    )
    return time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(events: int, days: int, rounds: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-console-"))
    tag = uuid.uuid4().hex[:8]
    settings = RollupSettings(
        kafka_bootstrap_servers=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        redis_url=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
        clickhouse_url=f"chdb://{work / 'clickhouse'}",
        clickhouse_database=f"bench_console_{tag}",
        topic_prefix=f"bc{tag}.",
        redis_prefix=f"bc{tag}:",
        kek=base64.b64encode(os.urandom(32)).decode(),
        data_dir=work,
    )
    await provision_topics(settings)
    broker = make_broker(settings, "bench")
    await broker.connect()
    try:
        workspace, keys = await ControlPlane(settings, broker).create_workspace("bench-console", "team")
    finally:
        await broker.stop()
    read = next(k.key for k in keys if k.scope == "read")
    app = build_http_app([create_service(settings)])
    try:
        async with app.router.lifespan_context(app):
            prefill_s = await asyncio.to_thread(
                prefill, settings.clickhouse_url, settings.clickhouse_database, workspace.workspace_id, events, days
            )
            transport = httpx.ASGITransport(app=app)
            headers = {"Authorization": f"Bearer {read}"}
            async with httpx.AsyncClient(transport=transport, base_url="http://bench", headers=headers) as client:
                for _ in range(300):  # until rollup has replayed the new key
                    if (await client.get("/v1/findings")).status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                today = datetime.now(UTC).date()
                plan = pages(str(today), str(today.replace(day=1)), str(today - timedelta(days=days - 1)))
                calls: dict[str, list[float]] = {}
                per_page: dict[str, list[float]] = {}

                async def timed(path: str) -> float:
                    started = time.perf_counter()
                    answer = await client.get(path)
                    assert answer.status_code == 200, (path, answer.status_code)
                    spent = time.perf_counter() - started
                    calls.setdefault(path.split("?")[-1], []).append(spent)
                    return spent

                for _ in range(rounds):
                    for name, paths in plan.items():
                        started = time.perf_counter()
                        await asyncio.gather(*(timed(p) for p in paths))
                        per_page.setdefault(name, []).append(time.perf_counter() - started)
                rows = (await client.get(plan["overview"][2])).json()["rows"]
    finally:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith(settings.topic_prefix)]
            if names:
                await admin.delete_topics(names)
        finally:
            await admin.close()
    ms = 1000.0
    return {
        "events": events,
        "days": days,
        "rounds": rounds,
        "prefill_s": round(prefill_s, 2),
        "largest_answer_rows": len(rows),
        "pages_ms": {
            n: {"p50": round(statistics.median(v) * ms, 1), "p95": round(pct(v, 0.95) * ms, 1)}
            for n, v in per_page.items()
        },
        "calls_ms": {
            n: {"p50": round(statistics.median(v) * ms, 1), "p95": round(pct(v, 0.95) * ms, 1)}
            for n, v in calls.items()
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(measure(args.events, args.days, args.rounds)), indent=2))


if __name__ == "__main__":
    main()
