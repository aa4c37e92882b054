"""rollup's configuration: the shared base plus its consumer and ClickHouse settings."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field

from spendstream.common.settings import BaseServiceSettings


class RollupSettings(BaseServiceSettings):
    http_port: int = Field(default=8082, ge=1, le=65535)
    group_id: str = "spendstream-rollup"
    clickhouse_database: str = Field(default="spendstream", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    # Bounded batches: at most this many Kafka records (each a batch of up to 500 events) or this long.
    # 600 under a backlog (300,000 events): three write chunks, so that decoding and writing overlap for most
    # of a batch (docs/benchmarks.md, rollup).
    batch_max_records: int = Field(default=600, ge=1)
    batch_timeout_ms: int = Field(default=200, ge=1)
    # Each ClickHouse insert has a fixed cost of tens of ms (a part per table and view), so inserts must be
    # large; a fetch returns at most this much per partition, which is what caps a batch under a backlog
    # (aiokafka's default, 1 MiB, is five 500-event envelopes).
    fetch_max_partition_bytes: int = Field(default=16 * 1024 * 1024, ge=1024 * 1024)
    # A batch is written in chunks of at most this many records, the next decoded while the previous is written
    # (consumer.py); each chunk is one insert, so chunks must stay large (its fixed cost, above).
    write_chunk_records: int = Field(default=200, ge=1)
    # How long a failing ClickHouse write is retried inside one batch before the batch is handed back.
    write_retry_seconds: float = Field(default=20.0, gt=0)
    reconcile_interval_seconds: float = Field(default=300.0, gt=0)
    # How soon the days of redelivered events are reconciled (a view part lost in a crash, consumer.py).
    repair_interval_seconds: float = Field(default=2.0, gt=0)
    reconcile_days: int = Field(default=2, ge=1)
    # The completeness ledger (ledger.py, completeness.py): a difference still there this long after its events
    # were ingested is a loss, and raises the gap metric and an alert. Longer than the reconcile interval, so a
    # drift the reconciler repairs never alerts.
    completeness_grace_seconds: float = Field(default=600.0, gt=0)
    # Each check reads the raw table (FINAL) over `completeness_days` days of every workspace: minutes apart.
    completeness_check_seconds: float = Field(default=300.0, gt=0)
    completeness_days: int = Field(default=3, ge=1)
    # Reconciliation with the provider's bill (reconciliation.py): a day's provider figures settle once read this
    # long after the day ended; a settled cost differing by more than the threshold raises one drift alert.
    reconciliation_settle_seconds: float = Field(default=2 * 86400.0, ge=0)
    drift_threshold_pct: Decimal = Field(default=Decimal(5), ge=0)
    drift_check_seconds: float = Field(default=900.0, gt=0)
    drift_days: int = Field(default=35, ge=1)
