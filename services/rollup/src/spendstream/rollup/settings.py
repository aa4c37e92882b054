"""rollup's configuration: the shared base plus its consumer and ClickHouse settings."""

from __future__ import annotations

from decimal import Decimal

from pydantic import Field, field_validator

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

    # The scheduled price refresh (price_refresh.py): the LiteLLM-format table to fetch daily; unset, the bundled
    # copy and the versions added with `spendstream prices refresh` are all there is (the offline default).
    prices_url: str | None = Field(default=None, pattern=r"^https?://", max_length=2048)
    prices_refresh_interval_seconds: float = Field(default=86400.0, gt=0)
    # A model with events in this many last days is in use: a table that stops pricing it is held.
    prices_in_use_days: int = Field(default=30, ge=1, le=400)
    # Comma-separated workspace ids whose admin keys may see and approve held price tables (a change for
    # every tenant); empty, only the CLI approves.
    price_admin_workspaces: str = ""

    @field_validator("price_admin_workspaces")
    @classmethod
    def _workspace_list(cls, value: str) -> str:
        if any(not w.strip() for w in value.split(",")) and value.strip():
            raise ValueError("a comma-separated list of workspace ids")
        return value

    def price_admins(self) -> frozenset[str]:
        return frozenset(w.strip() for w in self.price_admin_workspaces.split(",") if w.strip())

    # Margin alerts (margin_watch.py): a customer's or plan's month whose AI cost passes this share of its revenue.
    margin_alert_pct: int = Field(default=100, ge=1, le=10_000)
    margin_check_seconds: float = Field(default=900.0, gt=0)
    # Stripe's signature timestamp tolerance (the official package's default).
    stripe_tolerance_seconds: int = Field(default=300, ge=1)

    # Reconciliation with the provider's bill (reconciliation.py): a day's provider figures settle once read this
    # long after the day ended; a settled cost differing by more than the threshold raises one drift alert.
    reconciliation_settle_seconds: float = Field(default=2 * 86400.0, ge=0)
    drift_threshold_pct: Decimal = Field(default=Decimal(5), ge=0)
    drift_check_seconds: float = Field(default=900.0, gt=0)
    drift_days: int = Field(default=35, ge=1)

    # The audit log (audit_log.py): how long a record is kept after rollup stored it (TTL on audit_records).
    audit_retention_months: int = Field(default=12, ge=1, le=120)
