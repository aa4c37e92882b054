"""Content-free records that report a problem with someone else's data: rejections and dead letters."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


class RejectionRecord(BaseModel):
    """An event refused at the Kafka-native intake: where and why, never what it held."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workspace_id: str | None
    source_topic: str
    source_partition: int
    source_offset: int
    index: int | None
    field: str
    code: str
    at: datetime


class DeadLetter(BaseModel):
    """A record a consumer could not process: its coordinates and a reason code, no payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    consumer: str
    source_topic: str
    source_partition: int
    source_offset: int
    workspace_id: str | None
    reason: str
    at: datetime
