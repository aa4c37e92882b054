"""A fired alert as it travels on `alerts.fired.v1`: ids and numbers only.

The record names the budget by id; names, scope values, webhook URLs and e-mail addresses are looked up from
the budget at delivery time, so the 30-day topic holds nothing personal that an erasure would have to chase.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

Kind = Literal["threshold", "forecast", "spike"]


class FiredAlert(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    alert_id: str
    workspace_id: str
    budget_id: str
    budget_revision: int
    kind: Kind
    threshold_pct: int | None = None
    period: str  # YYYY-MM (threshold, forecast) or YYYY-MM-DD (spike)
    amount_usd: str
    spend_usd: str
    projected_usd: str | None = None  # forecast: month-end projection
    trailing_mean_usd: str | None = None  # spike: mean daily spend of the 7 days before
    fired_at: datetime


def alert_id(budget_id: str, revision: int, period: str, marker: str) -> str:
    """Stable for one arming of one marker: a re-armed threshold gets a new id, a re-delivery the same one."""
    return hashlib.sha256(f"{budget_id}|{revision}|{period}|{marker}".encode()).hexdigest()[:32]
