"""The private-broker fixture itself: failure tests rely on it to stop and restart Kafka safely."""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tests.support import PrivateKafka

pytestmark = pytest.mark.integration


async def _topics(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


async def test_a_private_broker_survives_a_kill_and_restart_with_its_data(private_kafka: PrivateKafka) -> None:
    assert isinstance(await _topics(private_kafka.bootstrap), list)
    private_kafka.kill()
    private_kafka.start()
    assert isinstance(await _topics(private_kafka.bootstrap), list)
