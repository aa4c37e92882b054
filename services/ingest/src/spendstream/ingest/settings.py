"""ingest's configuration: the shared base plus the limits of the front door."""

from __future__ import annotations

from pydantic import Field, field_validator

from spendstream.common.settings import BaseServiceSettings
from spendstream.ingest.workspaces import PLANS


class IngestSettings(BaseServiceSettings):
    http_port: int = Field(default=8081, ge=1, le=65535)
    max_body_bytes: int = 1024 * 1024
    max_inflated_bytes: int = 5 * 1024 * 1024
    dedupe_window_hours: int = Field(default=48, ge=1)
    publish_timeout_seconds: float = Field(default=10.0, gt=0)
    # Token bucket per workspace, in events: sustained rate and burst.
    rate_limit_events_per_second: float = Field(default=50_000, gt=0)
    rate_limit_burst_events: int = Field(default=100_000, ge=500)
    raw_intake_group_id: str = "spendstream-ingest-raw"
    # A raw-intake record larger than this is rejected unread (the broker's own cap is usually 1 MiB).
    raw_max_record_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Raw records are taken this many at a time (or what has arrived within the timeout) and handled side by
    # side, so the broker's acknowledgements of their forwards overlap instead of adding up.
    raw_batch_max_records: int = Field(default=16, ge=1, le=500)
    raw_batch_timeout_ms: int = Field(default=20, ge=1)
    default_plan: str = "free"
    # One data-key rotation per workspace per this many seconds: it bounds how many versions a workspace holds.
    data_key_rotation_interval_seconds: int = Field(default=3600, ge=0)
    # How often ingest removes data-key versions retired longer than datakeys.retired_lifetime() ago.
    data_key_upkeep_interval_seconds: float = Field(default=3600.0, gt=0)

    @field_validator("default_plan")
    @classmethod
    def _known_plan(cls, value: str) -> str:
        if value not in PLANS:
            raise ValueError(f"must be one of {', '.join(PLANS)}")
        return value
