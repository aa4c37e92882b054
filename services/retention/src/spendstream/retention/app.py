"""retention's wiring table.

| in                                               | out                          |
|--------------------------------------------------|------------------------------|
| retention.lifecycle.v1, retention.requests.v1    | retention.commands.v1        |
| retention.reports.v1 (owners' deletion reports)  | audit.receipts.v1            |

Foundation only: the consumer group is wired; schedules, commands and receipts come with the retention issue.
"""

from __future__ import annotations

from faststream import AckPolicy
from faststream.kafka import KafkaMessage

from spendstream.common.kafka import make_broker
from spendstream.common.service import Service
from spendstream.common.topics import DELETION_REPORTS, topic_name
from spendstream.retention.settings import RetentionSettings


def create_service(settings: RetentionSettings) -> Service:
    broker = make_broker(settings, "retention")
    state = {"ready": False}

    @broker.subscriber(
        topic_name(DELETION_REPORTS, settings.topic_prefix), group_id=f"{settings.topic_prefix}{settings.group_id}",
        auto_offset_reset="earliest", ack_policy=AckPolicy.NACK_ON_ERROR,
    )
    async def on_report(msg: KafkaMessage) -> None:
        return None

    async def start() -> None:
        await broker.start()
        state["ready"] = True

    async def stop() -> None:
        state["ready"] = False
        await broker.stop()

    return Service("retention", start=start, stop=stop, ready=lambda: state["ready"])
