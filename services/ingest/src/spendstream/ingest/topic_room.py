"""ingest's startup check that `usage.events.v1` holds the largest envelope ingest publishes.

ingest splits a sealed batch into envelopes of at most ENVELOPE_MAX_BYTES (batches.py), which Kafka's default
limit holds. A topic or broker configured with a smaller `max.message.bytes` would refuse some batches the README
allows, for good: ingest refuses to start against it instead, naming the setting to change.
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import USAGE_EVENTS, topic_name
from spendstream.ingest.batches import ENVELOPE_MAX_BYTES, RECORD_OVERHEAD_BYTES

NEEDED_BYTES = ENVELOPE_MAX_BYTES + RECORD_OVERHEAD_BYTES


class TopicTooSmall(RuntimeError):
    """The events topic cannot hold ingest's largest envelope, or does not exist."""


async def check_topic_room(settings: BaseServiceSettings) -> int:
    """The live `max.message.bytes` of `usage.events.v1`; raises TopicTooSmall when it is below NEEDED_BYTES."""
    name = topic_name(USAGE_EVENTS, settings.topic_prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, name, {"max.message.bytes": None})
        response = await admin.describe_configs([resource])
    finally:
        await admin.close()
    error_code, _, _, _, entries = response[0].resources[0][:5]
    if error_code != 0:
        raise TopicTooSmall(
            f"topic {name} cannot be described (Kafka error code {error_code}); run `spendstream topics create`"
        )
    live = {entry[0]: entry[1] for entry in entries}
    size = int(live.get("max.message.bytes") or 0)
    if size < NEEDED_BYTES:
        raise TopicTooSmall(
            f"topic {name} holds records of at most {size} bytes (max.message.bytes); ingest publishes envelopes "
            f"of up to {ENVELOPE_MAX_BYTES} bytes plus key and headers: set max.message.bytes to at least "
            f"{NEEDED_BYTES} (kafka-configs --alter --entity-type topics --entity-name {name} "
            f"--add-config max.message.bytes={NEEDED_BYTES})"
        )
    return size
