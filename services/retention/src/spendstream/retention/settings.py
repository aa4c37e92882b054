"""retention's configuration: the shared base plus its own fields."""

from __future__ import annotations

from pydantic import Field

from spendstream.common.settings import BaseServiceSettings


class RetentionSettings(BaseServiceSettings):
    http_port: int = Field(default=8084, ge=1, le=65535)
    group_id: str = "spendstream-retention"
    # A cancelled workspace is erased this long after its cancellation unless reactivated in between.
    cancellation_grace_days: int = Field(default=30, ge=1)
    # How often the clock is consulted for due schedules and overdue owners.
    tick_seconds: float = Field(default=30.0, gt=0)
    # An owner that has not reported this long after a command gets the command again ...
    command_timeout_seconds: float = Field(default=120.0, gt=0)
    # ... at most this many times in all; then the request fails with the silent owners named.
    max_attempts: int = Field(default=5, ge=1)
    # How often a request awaiting compaction re-reads the compacted topics (it is also re-read on every tick).
    compaction_check_seconds: float = Field(default=30.0, gt=0)
