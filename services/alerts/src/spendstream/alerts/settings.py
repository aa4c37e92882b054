"""alerts's configuration: the shared base plus its own fields."""

from __future__ import annotations

from pydantic import Field, field_validator

from spendstream.common.settings import BaseServiceSettings, is_http_url
from spendstream.common.smtp import SmtpSettings


# E-mail over SMTP (SmtpSettings): an empty host disables the channel (deliveries are logged as not configured).
class AlertsSettings(BaseServiceSettings, SmtpSettings):
    http_port: int = Field(default=8083, ge=1, le=65535)
    group_id: str = "spendstream-alerts"
    # Deliveries read alerts.fired.v1 in their own group, so a slow webhook never holds back spend counting.
    delivery_group_id: str = "spendstream-alerts-delivery"
    batch_max_records: int = Field(default=200, ge=1)
    batch_timeout_ms: int = Field(default=100, ge=1)
    # Every budget is re-evaluated this often even without new events: a lowered budget, a forecast, and an
    # alert whose claimer crashed before publishing are all picked up by this sweep.
    sweep_interval_seconds: float = Field(default=5.0, gt=0)
    # A claimed-but-unpublished alert is taken over by another replica after this long.
    claim_lease_seconds: float = Field(default=30.0, gt=0)
    # Per-partition offsets already counted are kept this long: longer than usage.events.v1's retention (7 d).
    counted_offsets_ttl_days: int = Field(default=35, ge=8)
    # Reconciliation with rollup's ClickHouse figures (GET /internal/v1/spend); empty URL disables it.
    rollup_url: str = "http://127.0.0.1:8082"
    reconcile_interval_seconds: float = Field(default=60.0, gt=0)
    # Forecast: only once this much of the month has passed, so one busy first morning does not cry wolf.
    forecast_min_days: float = Field(default=3.0, ge=0)
    # Hard budgets: an unsettled reservation is released after this long (a request may ask for less or, up to
    # the maximum, more).
    reservation_ttl_seconds: int = Field(default=600, ge=1)
    reservation_max_ttl_seconds: int = Field(default=3600, ge=1)
    # Webhooks.
    webhook_allow_private: bool = False  # loopback, private, link-local targets refused unless this is set
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    delivery_max_attempts: int = Field(default=8, ge=1, le=20)
    delivery_backoff_seconds: float = Field(default=1.0, gt=0)
    delivery_backoff_max_seconds: float = Field(default=60.0, gt=0)
    delivery_log_days: int = Field(default=30, ge=1)

    @field_validator("rollup_url")
    @classmethod
    def _rollup_url(cls, value: str) -> str:
        if value and not is_http_url(value):
            raise ValueError("must be empty (no reconciliation) or http(s)://host:port of rollup")
        return value
