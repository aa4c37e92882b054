"""Fired alerts: their stable ids, and their publishing on `alerts.fired.v1` (the record: common.records).

A `FiredAlert` holds ids and numbers only: it names the budget by id; names, scope values, webhook URLs and
e-mail addresses are looked up from the budget at delivery time, so the 30-day topic holds nothing personal
that an erasure would have to chase.
"""

from __future__ import annotations

import hashlib

from faststream.kafka import KafkaBroker

from spendstream.alerts import metrics
from spendstream.common.kafka import Publisher
from spendstream.common.records import FiredAlert
from spendstream.common.topics import ALERTS_FIRED


def alert_id(budget_id: str, revision: int, period: str, marker: str) -> str:
    """Stable for one arming of one marker: a re-armed threshold gets a new id, a re-delivery the same one."""
    return hashlib.sha256(f"{budget_id}|{revision}|{period}|{marker}".encode()).hexdigest()[:32]


class AlertPublisher:
    """Publishes fired alerts on `alerts.fired.v1` (the evaluator's `publish`)."""

    def __init__(self, broker: KafkaBroker, topic_prefix: str) -> None:
        self._alerts = Publisher(broker, ALERTS_FIRED, topic_prefix)

    async def __call__(self, alert: FiredAlert) -> None:
        # Keyed by budget: one budget's alerts stay in order for the delivery consumer.
        await self._alerts.publish(alert, alert.budget_id)
        metrics.ALERTS_FIRED.labels(alert.kind).inc()
