"""Re-pricing (issue 22): `spendstream prices recompute` over N stored events, in a chDB directory of its own.

`python -m bench.recompute --events N [--workspaces W] [--days D]`

N events over W workspaces and D days (two month partitions), written straight into usage_events with
INSERT ... SELECT FROM numbers() (the view builds the rollup as it does for rollup's own inserts): a quarter
reported, the rest stored 'computed' at a stale price or 'unknown', across models with cached reads, cache
writes, reasoning, a long-context tier, and the standard, batch, priority and flex service tiers. Then one job
re-prices the whole range under the bundled table, and a second job runs again (it must change nothing). Prints
the seconds of each phase, rows changed, and a check of a sample of rows against the writer's own Python price
(Price.cost_of): mismatches must be 0.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from spendstream.common.pricebook import PriceBook
from spendstream.common.prices import bundled
from spendstream.rollup import recompute
from spendstream.rollup.clickhouse import clickhouse_client
from spendstream.rollup.recompute import BookPricing, Repricer, Request
from spendstream.rollup.schema import migrate

DB = "bench"
FIRST_DAY = date(2026, 9, 20)
# (provider, model): a long-context tier, a reasoning rate, cached-read rates, a Bedrock id, one the table does
# not price (it stays unknown).
MODELS = (
    ("openai", "gpt-4o-mini"),
    ("dashscope", "qwen-turbo"),
    ("openai", "o3-mini"),
    ("anthropic", "claude-sonnet-4-20250514"),
    ("google", "gemini-2.5-pro"),
    ("bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0"),
    ("mistral", "mistral-large-latest"),
)


def prefill(client: Any, events: int, workspaces: int, days: int) -> float:
    providers = "[" + ",".join(f"'{p}'" for p, _ in MODELS) + "]"
    models = "[" + ",".join(f"'{m}'" for _, m in MODELS) + "]"
    started = time.perf_counter()
    client.command(
        f"INSERT INTO {DB}.usage_events (workspace_id, event_id, ts, ingested_at, batch_id, provider, model, "
        "input_tokens, output_tokens, cached_input_tokens, reasoning_tokens, cache_creation_input_tokens, "
        "cache_creation_1h_input_tokens, service_tier, latency_ms, cost_usd, cost_source, "
        "feature, route, task_type, customer_plan, customer_id, environment, tags) "
        f"SELECT concat('ws', toString(number % {workspaces})), concat('e', toString(number)), "
        f"toDateTime64('{FIRST_DAY.isoformat()}', 3, 'UTC') + toIntervalSecond(number % {days * 86400}), "
        "now64(3), concat('b', toString(intDiv(number, 500))), "
        f"{providers}[intDiv(number, 7) % {len(MODELS)} + 1] AS provider, "
        f"{models}[intDiv(number, 7) % {len(MODELS)} + 1] AS model, "
        "200 + (number * 7919) % 260000 AS input_tokens, 50 + number % 4000 AS output_tokens, "
        "intDiv(input_tokens * (number % 3), 4) AS cached, intDiv(output_tokens * (number % 2), 3), "
        "intDiv((input_tokens - cached) * (number % 5), 8) AS writes, intDiv(writes, 1 + number % 3), "
        "['', '', '', 'batch', 'priority', 'flex'][number % 6 + 1], 100 + number % 3000, "
        "if(number % 4 = 0, toDecimal64((number % 1000) / 100000, 9), toDecimal64(0, 9)), "
        "multiIf(number % 4 = 0, 'reported', number % 11 = 0, 'unknown', 'computed'), "
        "['chat','search','summarize'][number % 3 + 1], '', '', '', concat('cust-', toString(number % 1000)), "
        "'prod', map('feature', 'chat') "
        f"FROM numbers({events})",
        settings={"max_insert_threads": 2},
    )
    return time.perf_counter() - started


def timed(target: Any, name: str, spent: dict[str, float]) -> None:
    """Accumulate the seconds of `target.name` into spent[name]."""
    original: Callable[..., Any] = getattr(target, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[name] += time.perf_counter() - started

    setattr(target, name, wrapper)


def sample_mismatches(client: Any, n: int = 2000) -> int:
    table = bundled()
    rows = client.query(
        f"SELECT provider, model, input_tokens, output_tokens, cached_input_tokens, reasoning_tokens, "
        "cache_creation_input_tokens, cache_creation_1h_input_tokens, service_tier, cost_usd, cost_source "
        f"FROM {DB}.usage_events WHERE cost_source != 'reported' ORDER BY cityHash64(event_id) LIMIT {n}"
    ).result_rows
    bad = 0
    for provider, model, i, o, c, r, w, h, tier, cost, source in rows:
        price = table.lookup(provider, model)
        computed = (
            price.cost_of(i, o, c, r, cache_writes=w, cache_writes_1h=h, service_tier=tier or None) if price else None
        )
        expected = (Decimal(0), "unknown") if computed is None else (computed, "computed")
        bad += (Decimal(cost), source) != expected
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workspaces", type=int, default=20)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-recompute-") as tmp:
        client = clickhouse_client(f"chdb://{Path(tmp) / 'clickhouse'}")
        migrate(client, DB, 12)
        prefill_s = prefill(client, args.events, args.workspaces, args.days)
        repricer = Repricer(client, DB)
        spent: dict[str, float] = defaultdict(float)
        for name in ("plan", "reprice_partition", "settle", "still_differing"):
            timed(repricer, name, spent)
        request = Request(FIRST_DAY, FIRST_DAY + timedelta(days=args.days - 1), None, "bench")
        pricing = BookPricing(PriceBook())
        started = time.perf_counter()
        first = recompute.run(repricer, request, pricing)
        first_s = time.perf_counter() - started
        phases = {k: round(v, 2) for k, v in spent.items()}
        spent.clear()
        started = time.perf_counter()
        second = recompute.run(repricer, request, pricing)
        second_s = time.perf_counter() - started
        report = {
            "events": args.events,
            "workspaces": args.workspaces,
            "days": args.days,
            "prefill_s": round(prefill_s, 2),
            "recompute_s": round(first_s, 2),
            "events_per_s": round(args.events / first_s),
            "phases_s": phases,
            "changed": first.changed,
            "rollup_groups": first.rollup_groups,
            "rounds": first.rounds,
            "second_run_s": round(second_s, 2),
            "second_run_changed": second.changed,
            "sample_mismatches": sample_mismatches(client),
        }
        client.close()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
