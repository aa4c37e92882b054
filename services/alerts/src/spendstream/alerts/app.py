"""alerts' wiring table.

| in                                                   | out / owns                  |
|------------------------------------------------------|-----------------------------|
| usage.events.v1 (group spendstream-alerts, batches)  | alerts.fired.v1             |
| alerts.budgets.v1 (replayed table)                   | Redis: spend counters, fired markers |

Foundation only: the consumer group is wired and reads the stream; budgets and thresholds come with the
alerts issue.
"""

from __future__ import annotations

from faststream import AckPolicy
from faststream.kafka import KafkaMessage

from spendstream.alerts.settings import AlertsSettings
from spendstream.common.kafka import make_broker
from spendstream.common.service import Service
from spendstream.common.topics import USAGE_EVENTS, topic_name


def create_service(settings: AlertsSettings) -> Service:
    broker = make_broker(settings, "alerts")
    state = {"ready": False}

    @broker.subscriber(
        topic_name(USAGE_EVENTS, settings.topic_prefix), group_id=f"{settings.topic_prefix}{settings.group_id}",
        batch=True, max_records=500, batch_timeout_ms=200, auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_usage_events(msg: KafkaMessage) -> None:
        return None

    async def start() -> None:
        await broker.start()
        state["ready"] = True

    async def stop() -> None:
        state["ready"] = False
        await broker.stop()

    return Service("alerts", start=start, stop=stop, ready=lambda: state["ready"])
