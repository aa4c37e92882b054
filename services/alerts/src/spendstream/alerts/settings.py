"""alerts's configuration: the shared base plus its own fields."""

from __future__ import annotations

from pydantic import Field

from spendstream.common.settings import BaseServiceSettings


class AlertsSettings(BaseServiceSettings):
    http_port: int = Field(default=8083, ge=1, le=65535)
    group_id: str = "spendstream-alerts"
