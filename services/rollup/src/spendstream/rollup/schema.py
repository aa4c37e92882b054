"""rollup's ClickHouse schema, created and migrated by the service itself, idempotently.

Why the design is exact (each (workspace, event_id) counted once) although a materialized view feeds a
SummingMergeTree, which would count a duplicate twice:
  1. `usage_events` (raw) is the source of truth, ordered by (workspace_id, event_id). Before a batch is
     inserted, `store.insert_batch` asks which of its ids are already stored and drops them, so a replayed
     partition, a redelivered batch or an event re-sent days later never reaches the view a second time.
  2. The insert carries an `insert_deduplication_token` derived from the rows themselves, and both tables
     keep a deduplication window: a retried insert of the same rows (a timeout that did in fact succeed)
     is discarded by ClickHouse in the raw table *and* in the view's target.
  3. What 1 and 2 cannot exclude (two consumers racing during a rebalance, a process killed between the raw
     part and the view part) is repaired by `store.reconcile`: it recomputes recent days from the raw table
     (deduplicated with FINAL) and writes the difference into the rollup, so drift cannot accumulate.
Deletion is cheap because both tables lead with workspace_id (tenant erasure touches one key range) and
partition by month (expiry drops whole partitions through TTL).
"""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

DIMENSIONS = ("provider", "model", "feature", "route", "task_type", "customer_plan", "customer_id")
MEASURES = ("requests", "input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens",
            "cost_usd", "latency_ms_sum")
SCHEMA_VERSION = 1


def statements(db: str, retention_months: int) -> list[str]:
    return [
        f"CREATE DATABASE IF NOT EXISTS {db} ENGINE = Atomic",
        f"""CREATE TABLE IF NOT EXISTS {db}.schema_migrations (version UInt32, applied_at DateTime DEFAULT now())
            ENGINE = ReplacingMergeTree ORDER BY version""",
        f"""CREATE TABLE IF NOT EXISTS {db}.usage_events (
            workspace_id LowCardinality(String),
            event_id String,
            ts DateTime64(3, 'UTC'),
            ingested_at DateTime64(3, 'UTC'),
            stored_at DateTime64(3, 'UTC') DEFAULT now64(3),
            batch_id String,
            provider LowCardinality(String),
            model LowCardinality(String),
            input_tokens UInt64,
            output_tokens UInt64,
            cached_input_tokens UInt64,
            reasoning_tokens UInt64,
            latency_ms UInt32,
            cost_usd Decimal(18, 9),
            cost_source Enum8('reported' = 1, 'computed' = 2, 'unknown' = 3),
            feature String,
            route String,
            task_type LowCardinality(String),
            customer_plan LowCardinality(String),
            customer_id String,
            environment LowCardinality(String),
            tags Map(String, String)
        ) ENGINE = ReplacingMergeTree(ingested_at)
        PARTITION BY toYYYYMM(ts)
        ORDER BY (workspace_id, event_id)
        TTL toDateTime(ingested_at) + INTERVAL {retention_months} MONTH
        SETTINGS non_replicated_deduplication_window = 10000""",
        f"""CREATE TABLE IF NOT EXISTS {db}.usage_daily (
            workspace_id LowCardinality(String),
            day Date,
            provider LowCardinality(String),
            model LowCardinality(String),
            feature String,
            route String,
            task_type LowCardinality(String),
            customer_plan LowCardinality(String),
            customer_id String,
            cost_source Enum8('reported' = 1, 'computed' = 2, 'unknown' = 3),
            requests Int64,
            input_tokens Int64,
            output_tokens Int64,
            cached_input_tokens Int64,
            reasoning_tokens Int64,
            cost_usd Decimal(38, 9),
            latency_ms_sum Int64
        ) ENGINE = SummingMergeTree
        PARTITION BY toYYYYMM(day)
        ORDER BY (workspace_id, day, provider, model, feature, route, task_type, customer_plan, customer_id,
                  cost_source)
        TTL day + INTERVAL {retention_months} MONTH
        SETTINGS non_replicated_deduplication_window = 10000""",
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_daily_mv TO {db}.usage_daily AS
        SELECT workspace_id, toDate(ts) AS day, provider, model, feature, route, task_type, customer_plan,
               customer_id, cost_source, toInt64(count()) AS requests,
               toInt64(sum(input_tokens)) AS input_tokens, toInt64(sum(output_tokens)) AS output_tokens,
               toInt64(sum(cached_input_tokens)) AS cached_input_tokens,
               toInt64(sum(reasoning_tokens)) AS reasoning_tokens,
               toDecimal128(sum(cost_usd), 9) AS cost_usd, toInt64(sum(latency_ms)) AS latency_ms_sum
        FROM {db}.usage_events
        GROUP BY workspace_id, day, provider, model, feature, route, task_type, customer_plan, customer_id,
                 cost_source""",
        f"INSERT INTO {db}.schema_migrations (version) SELECT {SCHEMA_VERSION} WHERE "
        f"(SELECT count() FROM {db}.schema_migrations WHERE version = {SCHEMA_VERSION}) = 0",
    ]


def migrate(client: Client, db: str, retention_months: int) -> None:
    """Create or upgrade the schema; safe to run on every start and from several processes in turn."""
    for statement in statements(db, retention_months):
        client.command(statement)
