"""retention's configuration: the shared base plus its own fields."""

from __future__ import annotations

from pydantic import Field, field_validator

from spendstream.common.erasure import OWNERS, Owner
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
    # The erasure owners this installation runs (comma-separated): the saga commands them all and waits for
    # each one's report before the receipt. Default every owner; an installation without the connectors
    # service lists the others, or its erasures would wait for a report that never comes and fail.
    erasure_owners: str = ",".join(OWNERS)

    @field_validator("erasure_owners")
    @classmethod
    def _owner_list(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",")]
        if not all(names) or any(n not in OWNERS for n in names) or len(set(names)) != len(names):
            raise ValueError(f"a comma-separated list of distinct owners among {', '.join(OWNERS)}")
        return value

    def owners(self) -> tuple[Owner, ...]:
        """The installed owners, in the order of `OWNERS` (the receipt's order)."""
        named = {n.strip() for n in self.erasure_owners.split(",")}
        return tuple(o for o in OWNERS if o in named)
