"""ingest's startup check that `usage.events.v1` holds the largest envelope ingest publishes.

ingest splits a sealed batch into envelopes of at most ENVELOPE_MAX_BYTES (batches.py), which Kafka's default
limit holds. A topic or broker configured with a smaller `max.message.bytes` would refuse some batches the README
allows, for good: ingest refuses to start against it instead, naming the setting to change. The same goes for a
missing `ingest.tallies.v1` (an installation upgraded without `spendstream topics create`): every batch would be
refused for want of its tally (batches.py).
"""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import INGEST_TALLIES, USAGE_EVENTS, topic_name
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
        tallies = topic_name(INGEST_TALLIES, settings.topic_prefix)
        resource = ConfigResource(ConfigResourceType.TOPIC, name, {"max.message.bytes": None})
        response = await admin.describe_configs([resource, ConfigResource(ConfigResourceType.TOPIC, tallies)])
    finally:
        await admin.close()
    described = {r[3]: r for answer in response for r in answer.resources}
    for topic in (name, tallies):
        error_code = described[topic][0] if topic in described else -1
        if error_code != 0:
            raise TopicTooSmall(
                f"topic {topic} cannot be described (Kafka error code {error_code}); run `spendstream topics create`"
            )
    entries = described[name][4]
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
