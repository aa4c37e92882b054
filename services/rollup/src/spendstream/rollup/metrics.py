"""rollup's Prometheus metrics."""

from aiokafka import AIOKafkaConsumer
from prometheus_client import Counter, Gauge, Histogram

from spendstream.common.key_backoff import KEY_UNAVAILABLE as KEY_UNAVAILABLE  # shared: one name, `consumer` label

EVENTS_STORED = Counter("spendstream_rollup_events_stored_total", "Events newly stored in ClickHouse")
EVENTS_DUPLICATE = Counter("spendstream_rollup_events_duplicate_total", "Events skipped as already stored")
DEAD_LETTERS = Counter("spendstream_rollup_dead_letters_total", "Records dead-lettered, by reason", ["reason"])
BATCH_RECORDS = Histogram(
    "spendstream_rollup_batch_records",
    "Kafka records per consumed batch",
    buckets=(1, 5, 10, 25, 50, 100, 200, 500, 1000),
)
INSERT_SECONDS = Histogram(
    "spendstream_rollup_insert_seconds",
    "ClickHouse insert time per batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
INGEST_TO_STORED_SECONDS = Histogram(
    "spendstream_rollup_ingest_to_stored_seconds",
    "Delay from ingest's acceptance to the ClickHouse write",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
WRITE_FAILURES = Counter("spendstream_rollup_write_failures_total", "Failed ClickHouse write attempts")
CORRECTIONS = Counter("spendstream_rollup_reconcile_corrections_total", "Rollup groups corrected by reconcile")
LAST_STORED_INGESTED_AT = Gauge(
    "spendstream_rollup_last_stored_ingested_at_seconds", "Ingestion time of the newest stored batch (unix seconds)"
)
CONSUMER_LAG = Gauge(
    "spendstream_rollup_consumer_lag_records",
    "usage.events.v1 records not consumed yet on the partitions this replica owns",
)


async def observe_lag(consumer: object) -> None:
    """Set CONSUMER_LAG after a batch: high watermark minus position, summed over this replica's partitions.

    Updated only when a batch arrives, so a stalled replica's value goes stale: alert on the broker-side group
    lag and on LAST_STORED_INGESTED_AT (docs/operations.md); this gauge is for dashboards. The in-memory test
    broker's consumer has no watermarks and is skipped.
    """
    if not isinstance(consumer, AIOKafkaConsumer):
        return
    lag = 0
    for tp in consumer.assignment():
        high = consumer.highwater(tp)
        if high is not None:
            lag += max(0, high - await consumer.position(tp))
    CONSUMER_LAG.set(lag)


PRICE_REFRESHES = Counter(
    "spendstream_rollup_price_refreshes_total",
    "Scheduled price-table refreshes, by outcome (added, held, unchanged, invalid, unreachable)",
    ["outcome"],
)
PRICES_HELD = Gauge("spendstream_rollup_price_versions_held", "Price versions waiting for an admin's approval")
