"""A fired alert as it travels on `alerts.fired.v1`: ids and numbers only.

The record names the budget by id; names, scope values, webhook URLs and e-mail addresses are looked up from
the budget at delivery time, so the 30-day topic holds nothing personal that an erasure would have to chase.
"""

from __future__ import annotations

import hashlib


def alert_id(budget_id: str, revision: int, period: str, marker: str) -> str:
    """Stable for one arming of one marker: a re-armed threshold gets a new id, a re-delivery the same one."""
    return hashlib.sha256(f"{budget_id}|{revision}|{period}|{marker}".encode()).hexdigest()[:32]
