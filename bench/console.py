"""The console's page data (issue 24): the API calls each page makes, timed over a large workspace.

`python -m bench.console [--events N] [--days D] [--rounds R]`   (defaults: a smoke size, 200,000 events)

N events of one workspace over the last D days, as the rollup rows every page reads (usage_daily, seeded with
INSERT ... SELECT FROM numbers(); prefill's docstring says why not through the consumer): 36 models, 300
features (the charts' "hundreds of series"), 5,000 skewed customers. Then, through the real rollup routes in this
process (key
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

PROVIDERS = ("openai", "anthropic", "google", "mistral", "bedrock", "azure")
# Dozens of models: six providers, six models each; the last one of each is not in the price table.
MODELS = tuple(f"{p}-model-{i}" for p in PROVIDERS for i in range(6))
PLANS = ("free", "team", "enterprise")
TASKS = ("chat", "rag", "summarize", "classify", "extract", "agent")
EVENTS_PER_ROW = 10  # events one rollup row sums, on average (a customer's feature on a model on a day)


# The series the pages ask for (top): overview.js's TOP, explore.js's SERIES.
OVERVIEW_TOP = 10
EXPLORE_SERIES = 10


def pages(today: str, month_start: str, month_ago: str) -> dict[str, list[str]]:
    """What each page of the console asks for (static/js/pages/*.js), with the defaults it opens with."""
    month = f"from={month_start}&to={today}"
    thirty = f"from={month_ago}&to={today}"

    def overview(days: str) -> list[str]:
        # Its four groupings in one call.
        groupings = "&".join(f"group_by={g}" for g in ("model", "feature", "customer_id", "day,model"))
        return [f"/v1/usage/groupings?{days}&{groupings}&top={OVERVIEW_TOP}"]

    return {
        "overview": overview(month),
        "overview (stacked by feature)": [f"/v1/usage?{month}&group_by=day,feature&top={OVERVIEW_TOP}"],
        # Late in a month the overview covers up to 31 days: the same calls over the full 30 days seeded.
        "overview (a full month)": overview(thirty),
        # The same as four /v1/usage calls at once (what one call to /v1/usage/groupings stands for), for comparison.
        "overview (a full month, as four calls)": [
            f"/v1/usage?{thirty}&group_by={g}&top={OVERVIEW_TOP}"
            for g in ("model", "feature", "customer_id", "day,model")
        ],
        "explore (30 days by model)": [f"/v1/usage?{thirty}&group_by=model&top={EXPLORE_SERIES}"],
        "explore (30 days by day, model)": [f"/v1/usage?{thirty}&group_by=day,model&top={EXPLORE_SERIES}"],
        "explore (30 days by day, feature)": [f"/v1/usage?{thirty}&group_by=day,feature&top={EXPLORE_SERIES}"],
        # The largest grouping Explore can ask for: every customer's every day (about 144,000 groups at 10M events),
        # the ten costliest customers kept.
        "explore (30 days by day, customer)": [f"/v1/usage?{thirty}&group_by=day,customer_id&top={EXPLORE_SERIES}"],
        # The same without top, as an API client may still ask: every row.
        "api: 30 days by day, customer, every row": [f"/v1/usage?{thirty}&group_by=day,customer_id"],
        "findings": ["/v1/findings"],
    }


def prefill(url: str, db: str, workspace_id: str, events: int, days: int) -> tuple[float, int]:
    """Seed usage_daily, the table every page reads, with the rollup rows of `events` events; returns the time it
    took and the events seeded (the rows' requests, summed).

    A row stands for 1-19 events (10 on average) of one customer's feature on one model on one day: customers
    are skewed (the first ones spend most) and each uses 4 of the 300 features; a feature calls 3 of the 36
    models and has one route (40 in all) and one task type. Straight into the rollup table rather than
    through the consumer and the view: the consumer stores about 10k events/s here, 10M would take hours."""
    client = clickhouse_client(url)
    first = datetime.now(UTC).date() - timedelta(days=days - 1)
    providers = "[" + ",".join(f"'{p}'" for p in PROVIDERS) + "]"
    plans = "[" + ",".join(f"'{p}'" for p in PLANS) + "]"
    tasks = "[" + ",".join(f"'{t}'" for t in TASKS) + "]"
    rows = max(1, events // EVENTS_PER_ROW)
    started = time.perf_counter()
    client.command(
        f"""INSERT INTO {db}.usage_daily (workspace_id, day, provider, model, feature, route, task_type,
            customer_plan, customer_id, cost_source, service_tier, requests, input_tokens, output_tokens,
            cached_input_tokens, reasoning_tokens, cache_creation_input_tokens, cache_creation_1h_input_tokens,
            cost_usd, latency_ms_sum)
        SELECT '{workspace_id}', toDate('{first}') + (number % {days}) AS d,
               {providers}[m % {len(PROVIDERS)} + 1], concat({providers}[m % {len(PROVIDERS)} + 1], '-model-',
               toString(intDiv(m, {len(PROVIDERS)}))),
               concat('feature-', toString(f)), concat('/route-', toString(f % 40)), {tasks}[f % {len(TASKS)} + 1],
               {plans}[c % {len(PLANS)} + 1], concat('cust-', toString(c)),
               if(intDiv(m, {len(PROVIDERS)}) = 5, 'unknown', 'computed'), '',
               1 + number % 19 AS n, n * (200 + intHash32(number) % 20000), n * (50 + number % 4000),
               n * (number % 100), 0, 0, 0,
               if(intDiv(m, {len(PROVIDERS)}) = 5, toDecimal128(0, 9),
                  toDecimal128(n * ((number * 13) % 1000) / 100000, 9)),
               n * (100 + number % 3000)
        FROM (SELECT number, c, (c * 7 + intHash32(number) % 4) % 300 AS f,
                     (f * 5 + intHash32(number * 3) % 3) % {len(MODELS)} AS m
              FROM (SELECT number, toUInt32(pow(intHash32(number * 5) % 1000000 / 1000000, 3) * 5000) AS c
                    FROM numbers({rows})))""",
        settings={"max_insert_threads": 2},
    )
    spent = time.perf_counter() - started
    seeded = client.query(
        f"SELECT sum(requests), count() FROM {db}.usage_daily WHERE workspace_id = {{ws:String}}",
        parameters={"ws": workspace_id},
    ).result_rows[0]
    return spent, int(seeded[0])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(events: int, days: int, rounds: int) -> dict[str, Any]:
    seeded = 0
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
            prefill_s, seeded = await asyncio.to_thread(
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
                rows = (await client.get(plan["api: 30 days by day, customer, every row"][0])).json()["rows"]
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
        "events": seeded,
        "rollup_rows_inserted": max(1, events // EVENTS_PER_ROW),
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
