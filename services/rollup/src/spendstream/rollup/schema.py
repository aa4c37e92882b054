"""rollup's ClickHouse schema, created and migrated by the service itself, idempotently.

Why the design is exact (each (workspace, event_id) counted once) although a materialized view feeds a
SummingMergeTree, which would count a duplicate twice:
  1. `usage_events` (raw) is the source of truth, ordered by (workspace_id, event_id). Before a chunk of
     batches is inserted, `writes.ClickHouseWriter.insert_new` asks which of its ids are already stored and
     drops them, so a replayed partition, a redelivered batch or an event re-sent days later never reaches the
     view a second time.
  2. The insert carries an `insert_deduplication_token` derived from its body, and both tables keep a
     deduplication window: a retried insert of the same events (a timeout that did in fact succeed) is
     discarded by ClickHouse in the raw table *and* in the view's target.
  3. What 1 and 2 cannot exclude (two consumers racing during a rebalance, a process killed between the raw
     part and the view part) is repaired by `reconcile.Reconciler.reconcile`: it recomputes recent days from
     the raw table (deduplicated with FINAL) and writes the difference into the rollup, so drift cannot
     accumulate.
Deletion is cheap because both tables lead with workspace_id (tenant erasure touches one key range) and
partition by month (expiry drops whole partitions through TTL).

Events enter through one table, `usage_batches_in` (version 4), of Null engine (it stores nothing): one row per
envelope, its events as the JSON array ingest sealed (ClickHouse parses it; rollup's Python neither builds nor
writes a row per event), plus rollup's price for each event that reports no cost; its view spreads the events
into usage_events' columns (ARRAY JOIN). Where some events of a batch must be left out (already stored, an
erased customer's, a repeat) or its plaintext was not read whole, the kept events are encoded into the same
array (msgspec writes the sealed events as ingest does). ClickHouse's JSON reader fills a LowCardinality column
value by value, so the entry table has plain String types and the view converts whole columns. A block keeps
its insert_deduplication_token through the view (deduplicate_blocks_in_dependent_materialized_views), so a
retried insert is still discarded in usage_events and in usage_daily (tests/rollup/test_store.py). A column
added to usage_events later must be added to the entry table and its view in the same migration, as version 7
does (the event's cache writes, service tier and reservation: existing tables altered, both views replaced;
`service_tier` also ends usage_daily's sort key, a dimension of few values).
Version 3's entry table of single rows, `usage_events_in`, is dropped by version 5.

`workspace_watermarks` (version 2) keeps max(ingested_at) per workspace through its own view. max() is
idempotent, so a duplicate reaching it is harmless; and since ingest keys every batch by workspace, all of a
workspace's batches sit in one partition in order, which makes that maximum the freshness watermark: every
batch ingested before it is stored (or dead-lettered).

Migrations are numbered and recorded in `schema_migrations`; every statement is idempotent, so a crash
half-way through a migration simply runs it again. TTLs follow `retention_months` on every start.
Raw events expire 12 (1-13) months after ingestion; a rollup row expires that long after its day, so a
back-dated event's rollup row can leave before its raw event does (never the other way round).
"""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

# service_tier (version 7) is last: it ends usage_daily's sort key.
DIMENSIONS = ("provider", "model", "feature", "route", "task_type", "customer_plan", "customer_id", "service_tier")
MEASURES = (
    "requests",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "cost_usd",
    "latency_ms_sum",
)
TABLES = ("usage_events", "usage_daily", "workspace_watermarks")
# The completeness ledger (version 10, ledger.py): per workspace, UTC day of the events and envelope (batch id).
LEDGER_TABLES = (
    "ledger_accepted",
    "ledger_read",
    "ledger_repeats",
    "ledger_dead",
    "ledger_erased",
)
# The providers' own figures (version 11, provider_figures.py).
PROVIDER_TABLES = ("provider_usage", "provider_days")
# usage_events' columns of version 3, whose view wrote them all but stored_at (its own default).
_V3_EVENT_COLUMNS = (
    "workspace_id",
    "event_id",
    "ts",
    "ingested_at",
    "batch_id",
    "provider",
    "model",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "latency_ms",
    "cost_usd",
    "cost_source",
    "feature",
    "route",
    "task_type",
    "customer_plan",
    "customer_id",
    "environment",
    "tags",
)
# usage_events' columns but stored_at: what each event fills in.
EVENT_COLUMNS = (
    *_V3_EVENT_COLUMNS,
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "service_tier",
    "reservation_id",
    "price_ref",  # version 8
)
# The sealed event's keys and types (events.SealedEvent) as usage_batches_in reads them, of versions 4 and 7.
_V4_EVENT_TUPLE = """event_id String, provider String, model String, input_tokens UInt64, output_tokens UInt64,
                    cached_input_tokens Nullable(UInt64), reasoning_tokens Nullable(UInt64), latency_ms UInt32,
                    cost_usd Nullable(Decimal(18, 9)), timestamp DateTime64(3, 'UTC'), tags Map(String, String)"""
_EVENT_TUPLE = f"""{_V4_EVENT_TUPLE},
                    cache_creation_input_tokens Nullable(UInt64), cache_creation_1h_input_tokens Nullable(UInt64),
                    service_tier Nullable(String), reservation_id Nullable(String)"""
_DAILY_KEY = "workspace_id, day, provider, model, feature, route, task_type, customer_plan, customer_id, cost_source"

# The audit log's retention, a setting of its own (audit_retention_months): TTL on the month rollup stored it.
AUDIT_TTL = "toDateTime(stored_at) + INTERVAL {months} MONTH"


def _ttls(retention_months: int) -> dict[str, str]:
    return {
        "usage_events": f"toDateTime(ingested_at) + INTERVAL {retention_months} MONTH",
        "usage_daily": f"day + INTERVAL {retention_months} MONTH",
        "workspace_watermarks": f"toDateTime(ingested_at) + INTERVAL {retention_months} MONTH",
        **{table: f"day + INTERVAL {retention_months} MONTH" for table in (*LEDGER_TABLES, *PROVIDER_TABLES)},
        # Revenue lives as long as the usage it is compared with.
        "revenue": f"period_end + INTERVAL {retention_months} MONTH",
    }


def migrations(db: str, retention_months: int) -> dict[int, list[str]]:
    """Version -> idempotent statements. Append new versions; never edit an applied one."""
    ttl = _ttls(retention_months)
    return {
        1: [
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
            TTL {ttl["usage_events"]}
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
            TTL {ttl["usage_daily"]}
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
        ],
        2: [
            f"""CREATE TABLE IF NOT EXISTS {db}.workspace_watermarks (
                workspace_id LowCardinality(String),
                ingested_at SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
            ) ENGINE = AggregatingMergeTree
            ORDER BY workspace_id
            TTL {ttl["workspace_watermarks"]}""",
            f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.workspace_watermarks_mv TO {db}.workspace_watermarks AS
            SELECT workspace_id, max(ingested_at) AS ingested_at FROM {db}.usage_events GROUP BY workspace_id""",
            # Backfill from events stored before this version; max() makes a repeated backfill harmless.
            f"""INSERT INTO {db}.workspace_watermarks
            SELECT workspace_id, max(ingested_at) FROM {db}.usage_events GROUP BY workspace_id""",
        ],
        3: [
            # The entry table (see the module docstring): usage_events' columns with plain String types, Null
            # engine (stores nothing), and a view that copies every block into usage_events.
            f"""CREATE TABLE IF NOT EXISTS {db}.usage_events_in (
                workspace_id String,
                event_id String,
                ts DateTime64(3, 'UTC'),
                ingested_at DateTime64(3, 'UTC'),
                batch_id String,
                provider String,
                model String,
                input_tokens UInt64,
                output_tokens UInt64,
                cached_input_tokens UInt64,
                reasoning_tokens UInt64,
                latency_ms UInt32,
                cost_usd Decimal(18, 9),
                cost_source Enum8('reported' = 1, 'computed' = 2, 'unknown' = 3),
                feature String,
                route String,
                task_type String,
                customer_plan String,
                customer_id String,
                environment String,
                tags Map(String, String)
            ) ENGINE = Null""",
            f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_events_in_mv TO {db}.usage_events AS
            SELECT {", ".join(_V3_EVENT_COLUMNS)} FROM {db}.usage_events_in""",
        ],
        4: [
            # The entry table for whole batches (see the module docstring): `events` has the keys and types of
            # the sealed events (envelope.SealedEvent), `computed_cost_usd` one value per event: rollup's
            # price where the event reports none, NULL where it reports one or its model is not priced.
            f"""CREATE TABLE IF NOT EXISTS {db}.usage_batches_in (
                workspace_id String,
                batch_id String,
                ingested_at DateTime64(3, 'UTC'),
                events Array(Tuple({_V4_EVENT_TUPLE})),
                computed_cost_usd Array(Nullable(Decimal(18, 9)))
            ) ENGINE = Null""",
            f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_batches_in_mv TO {db}.usage_events AS
            SELECT workspace_id, e.event_id AS event_id, e.timestamp AS ts, ingested_at, batch_id,
                   e.provider AS provider, e.model AS model, e.input_tokens AS input_tokens,
                   e.output_tokens AS output_tokens, ifNull(e.cached_input_tokens, 0) AS cached_input_tokens,
                   ifNull(e.reasoning_tokens, 0) AS reasoning_tokens, e.latency_ms AS latency_ms,
                   coalesce(e.cost_usd, computed, toDecimal64(0, 9)) AS cost_usd,
                   multiIf(e.cost_usd IS NOT NULL, 'reported', computed IS NOT NULL, 'computed', 'unknown')
                       AS cost_source,
                   e.tags['feature'] AS feature, e.tags['route'] AS route, e.tags['task_type'] AS task_type,
                   e.tags['customer_plan'] AS customer_plan, e.tags['customer_id'] AS customer_id,
                   e.tags['environment'] AS environment, e.tags AS tags
            FROM {db}.usage_batches_in ARRAY JOIN events AS e, computed_cost_usd AS computed""",
        ],
        5: [
            # One way in (see the module docstring): the entry table of single rows goes, its view first.
            f"DROP VIEW IF EXISTS {db}.usage_events_in_mv SYNC",
            f"DROP TABLE IF EXISTS {db}.usage_events_in SYNC",
        ],
        6: [
            # The erasure owner's memory (erasure.py): the report of each request id, so a repeated command
            # answers with the same counts; kept 90 days, longer than retention re-sends a command.
            f"""CREATE TABLE IF NOT EXISTS {db}.erasure_log (
                request_id String, report String, recorded_at DateTime64(3, 'UTC') DEFAULT now64(3))
                ENGINE = ReplacingMergeTree ORDER BY request_id
                TTL toDateTime(recorded_at) + INTERVAL 90 DAY""",
            # End customers erased from a workspace (erased.py), as hashes: a replay must not store them again.
            f"""CREATE TABLE IF NOT EXISTS {db}.erased_subjects (
                workspace_id LowCardinality(String), subject_hash String, erased_at DateTime64(3, 'UTC'))
                ENGINE = ReplacingMergeTree(erased_at) ORDER BY (workspace_id, subject_hash)""",
        ],
        7: [
            # The event's cache writes, service tier and reservation (events.SealedEvent). Both views are
            # replaced: dropped first, so no block passes an old view into a changed table; an insert between
            # the drop and the create (another replica on a server) is repaired by the reconciler.
            f"DROP VIEW IF EXISTS {db}.usage_batches_in_mv SYNC",
            f"DROP VIEW IF EXISTS {db}.usage_daily_mv SYNC",
            f"""ALTER TABLE {db}.usage_events
                ADD COLUMN IF NOT EXISTS cache_creation_input_tokens UInt64 AFTER reasoning_tokens,
                ADD COLUMN IF NOT EXISTS cache_creation_1h_input_tokens UInt64 AFTER cache_creation_input_tokens,
                ADD COLUMN IF NOT EXISTS service_tier LowCardinality(String) AFTER cache_creation_1h_input_tokens,
                ADD COLUMN IF NOT EXISTS reservation_id String AFTER service_tier""",
            # service_tier ends the sort key: ClickHouse allows a column added in the same ALTER (without a
            # default expression; a String's default is '' anyway) at the end of it, and accepts the ALTER again.
            f"""ALTER TABLE {db}.usage_daily
                ADD COLUMN IF NOT EXISTS service_tier LowCardinality(String) AFTER cost_source,
                ADD COLUMN IF NOT EXISTS cache_creation_input_tokens Int64 AFTER reasoning_tokens,
                ADD COLUMN IF NOT EXISTS cache_creation_1h_input_tokens Int64 AFTER cache_creation_input_tokens,
                MODIFY ORDER BY ({_DAILY_KEY}, service_tier)""",
            f"ALTER TABLE {db}.usage_batches_in MODIFY COLUMN events Array(Tuple({_EVENT_TUPLE}))",
            f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_batches_in_mv TO {db}.usage_events AS
            SELECT workspace_id, e.event_id AS event_id, e.timestamp AS ts, ingested_at, batch_id,
                   e.provider AS provider, e.model AS model, e.input_tokens AS input_tokens,
                   e.output_tokens AS output_tokens, ifNull(e.cached_input_tokens, 0) AS cached_input_tokens,
                   ifNull(e.reasoning_tokens, 0) AS reasoning_tokens,
                   ifNull(e.cache_creation_input_tokens, 0) AS cache_creation_input_tokens,
                   ifNull(e.cache_creation_1h_input_tokens, 0) AS cache_creation_1h_input_tokens,
                   ifNull(e.service_tier, '') AS service_tier, ifNull(e.reservation_id, '') AS reservation_id,
                   e.latency_ms AS latency_ms,
                   coalesce(e.cost_usd, computed, toDecimal64(0, 9)) AS cost_usd,
                   multiIf(e.cost_usd IS NOT NULL, 'reported', computed IS NOT NULL, 'computed', 'unknown')
                       AS cost_source,
                   e.tags['feature'] AS feature, e.tags['route'] AS route, e.tags['task_type'] AS task_type,
                   e.tags['customer_plan'] AS customer_plan, e.tags['customer_id'] AS customer_id,
                   e.tags['environment'] AS environment, e.tags AS tags
            FROM {db}.usage_batches_in ARRAY JOIN events AS e, computed_cost_usd AS computed""",
            f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.usage_daily_mv TO {db}.usage_daily AS
            SELECT workspace_id, toDate(ts) AS day, provider, model, feature, route, task_type, customer_plan,
                   customer_id, cost_source, service_tier, toInt64(count()) AS requests,
                   toInt64(sum(input_tokens)) AS input_tokens, toInt64(sum(output_tokens)) AS output_tokens,
                   toInt64(sum(cached_input_tokens)) AS cached_input_tokens,
                   toInt64(sum(reasoning_tokens)) AS reasoning_tokens,
                   toInt64(sum(cache_creation_input_tokens)) AS cache_creation_input_tokens,
                   toInt64(sum(cache_creation_1h_input_tokens)) AS cache_creation_1h_input_tokens,
                   toDecimal128(sum(cost_usd), 9) AS cost_usd, toInt64(sum(latency_ms)) AS latency_ms_sum
            FROM {db}.usage_events
            GROUP BY {_DAILY_KEY}, service_tier""",
        ],
        8: [
            # Every stored cost names its source (pricebook.py): '' reported or unknown, 'table:<version id>',
            # 'rate:<rate id>' or 'rate:<rate id>/table:<version id>'. The entry table carries rollup's ref per
            # event beside its computed cost. Column by column, then the view's query in place (no moment
            # without a view, when an insert would vanish into the Null table); arrayResize lets an insert
            # without refs (a rollup of the previous version, mid-upgrade) through with ''.
            f"""ALTER TABLE {db}.usage_events
                ADD COLUMN IF NOT EXISTS price_ref LowCardinality(String) DEFAULT '' AFTER cost_source""",
            f"ALTER TABLE {db}.usage_batches_in ADD COLUMN IF NOT EXISTS computed_price_ref Array(String)",
            f"""ALTER TABLE {db}.usage_batches_in_mv MODIFY QUERY
            SELECT workspace_id, e.event_id AS event_id, e.timestamp AS ts, ingested_at, batch_id,
                   e.provider AS provider, e.model AS model, e.input_tokens AS input_tokens,
                   e.output_tokens AS output_tokens, ifNull(e.cached_input_tokens, 0) AS cached_input_tokens,
                   ifNull(e.reasoning_tokens, 0) AS reasoning_tokens,
                   ifNull(e.cache_creation_input_tokens, 0) AS cache_creation_input_tokens,
                   ifNull(e.cache_creation_1h_input_tokens, 0) AS cache_creation_1h_input_tokens,
                   ifNull(e.service_tier, '') AS service_tier, ifNull(e.reservation_id, '') AS reservation_id,
                   e.latency_ms AS latency_ms,
                   coalesce(e.cost_usd, computed, toDecimal64(0, 9)) AS cost_usd,
                   multiIf(e.cost_usd IS NOT NULL, 'reported', computed IS NOT NULL, 'computed', 'unknown')
                       AS cost_source,
                   if(e.cost_usd IS NULL AND computed IS NOT NULL, ref, '') AS price_ref,
                   e.tags['feature'] AS feature, e.tags['route'] AS route, e.tags['task_type'] AS task_type,
                   e.tags['customer_plan'] AS customer_plan, e.tags['customer_id'] AS customer_id,
                   e.tags['environment'] AS environment, e.tags AS tags
            FROM {db}.usage_batches_in
            ARRAY JOIN events AS e, computed_cost_usd AS computed,
                       arrayResize(computed_price_ref, length(events)) AS ref""",
        ],
        9: [
            # Re-pricing jobs (recompute.py): the audit record of each (who, range, prices, result), its latest
            # state winning; and the durable cursor, rows per (job, workspace, day) and step, so a job killed
            # half-way resumes where it stopped.
            f"""CREATE TABLE IF NOT EXISTS {db}.price_recompute_jobs (
                job_id String, workspace_id String, start Date, end Date, prices String, requested_by String,
                state Enum8('running' = 1, 'done' = 2, 'failed' = 3), result String,
                created_at DateTime64(3, 'UTC'), updated_at DateTime64(3, 'UTC'))
                ENGINE = ReplacingMergeTree(updated_at) ORDER BY job_id
                TTL toDateTime(created_at) + INTERVAL 400 DAY""",
            # 'repriced' (before the raw rows' mutation: the models it changes) then 'settled' (rollup done).
            f"""CREATE TABLE IF NOT EXISTS {db}.price_recompute_days (
                job_id String, workspace_id String, day Date, step Enum8('repriced' = 1, 'settled' = 2),
                events UInt64, models Array(Tuple(String, String)), done_at DateTime64(3, 'UTC') DEFAULT now64(3))
                ENGINE = ReplacingMergeTree(done_at) ORDER BY (job_id, workspace_id, day, step)
                TTL toDateTime(done_at) + INTERVAL 90 DAY""",
        ],
        10: [
            # The completeness ledger (ledger.py). Each table is keyed so that a redelivered record writes the
            # same row again (ReplacingMergeTree), and carries the envelope's ingestion time: the ledger of
            # envelopes ingested before a cut-off is settled (completeness.py). Rows expire with their day.
            # ingest's tallies (ingest.tallies.v1): events accepted per envelope and day.
            f"""CREATE TABLE IF NOT EXISTS {db}.ledger_accepted (
                workspace_id LowCardinality(String), day Date, batch_id String, ingested_at DateTime64(3, 'UTC'),
                events UInt64)
                ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(day) ORDER BY (workspace_id, day, batch_id)
                TTL {ttl["ledger_accepted"]}""",
            # What rollup read of each envelope: its events no earlier envelope carried (`events`), and those
            # of erased customers it did not store (`dropped`).
            f"""CREATE TABLE IF NOT EXISTS {db}.ledger_read (
                workspace_id LowCardinality(String), day Date, batch_id String, ingested_at DateTime64(3, 'UTC'),
                events UInt64, dropped UInt64)
                ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(day) ORDER BY (workspace_id, day, batch_id)
                TTL {ttl["ledger_read"]}""",
            # Events carried by more than one envelope (a retry after a lost answer): one row per carrier.
            f"""CREATE TABLE IF NOT EXISTS {db}.ledger_repeats (
                workspace_id LowCardinality(String), day Date, event_id String, batch_id String,
                ingested_at DateTime64(3, 'UTC'))
                ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(day) ORDER BY (workspace_id, day, event_id, batch_id)
                TTL {ttl["ledger_repeats"]}""",
            # Envelopes rollup dead-lettered: their clear count; the day is the ingestion day (the events' days
            # come from the envelope's tally when there is one).
            f"""CREATE TABLE IF NOT EXISTS {db}.ledger_dead (
                workspace_id LowCardinality(String), day Date, batch_id String, ingested_at DateTime64(3, 'UTC'),
                events UInt64)
                ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(day) ORDER BY (workspace_id, batch_id)
                TTL {ttl["ledger_dead"]}""",
            # Events a customer erasure deleted, per envelope and day, per request.
            f"""CREATE TABLE IF NOT EXISTS {db}.ledger_erased (
                workspace_id LowCardinality(String), day Date, batch_id String, ingested_at DateTime64(3, 'UTC'),
                request_id String, events UInt64)
                ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(day)
                ORDER BY (workspace_id, day, batch_id, request_id)
                TTL {ttl["ledger_erased"]}""",
            # Data alerts raised (completeness.py), so each is raised once across restarts.
            f"""CREATE TABLE IF NOT EXISTS {db}.data_alerts (
                workspace_id LowCardinality(String), alert_id String, kind LowCardinality(String),
                raised_at DateTime64(3, 'UTC') DEFAULT now64(3))
                ENGINE = ReplacingMergeTree ORDER BY (workspace_id, alert_id)
                TTL toDateTime(raised_at) + INTERVAL 13 MONTH""",
        ],
        11: [
            # What the providers reported (connectors.usage.v1, provider_figures.py): one row per connector, day,
            # model and scope, replaced by a re-read of the day (a later pulled_at wins); provider_days holds
            # every read of a day, so that rows a later read no longer has drop out (provider_figures.py).
            f"""CREATE TABLE IF NOT EXISTS {db}.provider_usage (
                workspace_id LowCardinality(String), connector_id String, provider LowCardinality(String), day Date,
                model LowCardinality(String), project String, api_key String,
                input_tokens UInt64, cached_input_tokens UInt64, cache_creation_input_tokens UInt64,
                cache_creation_1h_input_tokens UInt64, output_tokens UInt64, requests Nullable(UInt64),
                cost Nullable(Decimal(38, 9)), currency LowCardinality(String), source LowCardinality(String),
                pulled_at DateTime64(3, 'UTC'))
                ENGINE = ReplacingMergeTree(pulled_at) PARTITION BY toYYYYMM(day)
                ORDER BY (workspace_id, connector_id, day, model, project, api_key)
                TTL {ttl["provider_usage"]}""",
            f"""CREATE TABLE IF NOT EXISTS {db}.provider_days (
                workspace_id LowCardinality(String), connector_id String, provider LowCardinality(String), day Date,
                pulled_at DateTime64(3, 'UTC'))
                ENGINE = ReplacingMergeTree(pulled_at) PARTITION BY toYYYYMM(day)
                ORDER BY (workspace_id, connector_id, day)
                TTL {ttl["provider_days"]}""",
        ],
        12: [
            # Revenue (revenue.py): one row per (workspace, source, source id), the idempotency key; a record sent
            # again is a correction that replaces the row (the greatest `version` wins, read with FINAL). Kept
            # beside usage_daily so /v1/margin reads both from one store, and erasure.py finds it by its columns.
            f"""CREATE TABLE IF NOT EXISTS {db}.revenue (
                workspace_id LowCardinality(String), source LowCardinality(String), source_id String,
                customer_id String, customer_plan String, amount Decimal(38, 9), currency LowCardinality(String),
                period_start Date, period_end Date, version UInt64)
                ENGINE = ReplacingMergeTree(version) ORDER BY (workspace_id, source, source_id)
                TTL {ttl["revenue"]}""",
            # Plan prices: a plan's monthly amount, for customers billed by plan without a revenue record.
            f"""CREATE TABLE IF NOT EXISTS {db}.plan_prices (
                workspace_id LowCardinality(String), plan String, amount Decimal(38, 9),
                currency LowCardinality(String), version UInt64)
                ENGINE = ReplacingMergeTree(version) ORDER BY (workspace_id, plan)""",
            # Monthly currency rates an admin sets: USD per unit of `currency` in `month` (first day).
            f"""CREATE TABLE IF NOT EXISTS {db}.currency_rates (
                workspace_id LowCardinality(String), month Date, currency LowCardinality(String),
                usd_per_unit Decimal(38, 12), version UInt64)
                ENGINE = ReplacingMergeTree(version) ORDER BY (workspace_id, month, currency)""",
            # A workspace's Stripe endpoint: its signing secret sealed with the workspace's data key (stripe.py).
            f"""CREATE TABLE IF NOT EXISTS {db}.stripe_endpoints (
                workspace_id LowCardinality(String), key_version UInt32, sealed_secret String,
                customer_metadata_key String, version UInt64)
                ENGINE = ReplacingMergeTree(version) ORDER BY workspace_id""",
            # Stripe event ids already applied, so a replayed event counts once.
            f"""CREATE TABLE IF NOT EXISTS {db}.stripe_events (
                workspace_id LowCardinality(String), event_id String, received_at DateTime64(3, 'UTC') DEFAULT now64(3))
                ENGINE = ReplacingMergeTree ORDER BY (workspace_id, event_id)""",
        ],
        13: [
            # The audit log (audit_log.py, audit_chain.py): one row per record, chained per workspace. A plain
            # MergeTree: nothing replaces a row, so a second row at a seq stays visible to verification. Times to
            # the microsecond, as they are hashed. Partitioned by the month rollup stored the record, whose TTL
            # (audit_retention_months, set by migrate) drops whole parts: a workspace keeps a suffix of its chain.
            f"""CREATE TABLE IF NOT EXISTS {db}.audit_records (
                workspace_id LowCardinality(String), seq UInt64, record_id String, at DateTime64(6, 'UTC'),
                stored_at DateTime64(6, 'UTC'), prev_stored_at DateTime64(6, 'UTC'), service LowCardinality(String),
                actor_kind LowCardinality(String), actor_id String, action LowCardinality(String), target String,
                outcome LowCardinality(String), request_id String, client_hash String, detail Map(String, String),
                prev_hash String, hash String, mac String,
                INDEX record_ids record_id TYPE bloom_filter GRANULARITY 4)
                ENGINE = MergeTree PARTITION BY toYYYYMM(stored_at) ORDER BY (workspace_id, seq)
                TTL {AUDIT_TTL.format(months=12)}
                SETTINGS ttl_only_drop_parts = 1""",
        ],
        14: [
            # Each workspace's authenticated chain head (the greatest seq wins): shows a removed tail.
            f"""CREATE TABLE IF NOT EXISTS {db}.audit_heads (
                workspace_id LowCardinality(String), seq UInt64, hash String, mac String,
                stored_at DateTime64(6, 'UTC'))
                ENGINE = ReplacingMergeTree(seq) ORDER BY workspace_id""",
        ],
    }


SCHEMA_VERSION = max(migrations("db", 12))
# The columns of usage_batches_in, in the order writes.encode_batches writes them.
BATCH_COLUMNS = ("workspace_id", "batch_id", "ingested_at", "events", "computed_cost_usd", "computed_price_ref")


def applied_versions(client: Client, db: str) -> set[int]:
    rows = client.query(f"SELECT DISTINCT version FROM {db}.schema_migrations").result_rows
    return {int(r[0]) for r in rows}


def migrate(client: Client, db: str, retention_months: int, audit_retention_months: int = 12) -> list[int]:
    """Create or upgrade the schema and align TTLs; safe on every start. Returns the versions it applied."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {db} ENGINE = Atomic")
    client.command(f"""CREATE TABLE IF NOT EXISTS {db}.schema_migrations
        (version UInt32, applied_at DateTime DEFAULT now()) ENGINE = ReplacingMergeTree ORDER BY version""")
    done = applied_versions(client, db)
    applied = []
    for version, steps in sorted(migrations(db, retention_months).items()):
        if version in done:
            continue
        for statement in steps:
            client.command(statement)
        # Recorded last: a crash before this line reruns the (idempotent) steps on the next start.
        client.command(f"INSERT INTO {db}.schema_migrations (version) VALUES ({version})")
        applied.append(version)
    _align_ttls(client, db, retention_months, audit_retention_months)
    return applied


def _align_ttls(client: Client, db: str, retention_months: int, audit_retention_months: int) -> None:
    """MODIFY TTL only where the configured retention differs: the ALTER rewrites TTL info on every part."""
    rows = client.query(
        "SELECT name, engine_full FROM system.tables WHERE database = {db:String}", parameters={"db": db}
    ).result_rows
    engines = {str(name): str(engine) for name, engine in rows}
    wanted = {table: (expression, retention_months) for table, expression in _ttls(retention_months).items()}
    wanted["audit_records"] = (AUDIT_TTL.format(months=audit_retention_months), audit_retention_months)
    for table, (expression, months) in wanted.items():
        if table in engines and f"toIntervalMonth({months})" not in engines[table]:
            client.command(f"ALTER TABLE {db}.{table} MODIFY TTL {expression}")
