"""Fixtures for the three tiers. Endpoints come from TEST_KAFKA_BOOTSTRAP_SERVERS, TEST_REDIS_URL and
TEST_CLICKHOUSE_URL; otherwise the project's scripts start a real local Kafka and Redis (containers are used
only where a Docker engine answers and testcontainers is installed), and ClickHouse runs in-process via chDB.
A service that cannot be had fails the run: nothing is skipped silently.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from spendstream.common.logs import JsonFormatter
from tests.support import Isolation, PrivateKafka, Stack, drop_topics, new_isolation, provision

ROOT = Path(__file__).resolve().parents[1]

# Hypothesis' per-example deadline (200 ms) is a timing threshold: on a shared 2-core machine a property test
# failed once and passed on every rerun, its seed included (what a deadline flake looks like). Properties are
# checked here; speed lives in bench/.
settings.register_profile("spendstream", deadline=None)
settings.load_profile("spendstream")


def _local(component: str) -> None:
    """Start Kafka or Redis with scripts/stack.sh (idempotent); raises if it cannot come up."""
    subprocess.run([str(ROOT / "scripts" / "stack.sh"), f"start-{component}"], check=True)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    kafka = os.environ.get("TEST_KAFKA_BOOTSTRAP_SERVERS")
    redis = os.environ.get("TEST_REDIS_URL")
    if kafka is None:
        _local("kafka")
        kafka = "127.0.0.1:9092"
    if redis is None:
        _local("redis")
        redis = "redis://127.0.0.1:6379/0"
    # chDB allows one data directory per process, so the whole session shares one; tests isolate by database.
    clickhouse = os.environ.get("TEST_CLICKHOUSE_URL") or f"chdb://{tmp_path_factory.mktemp('chdb')}"
    yield Stack(kafka=kafka, redis=redis, clickhouse=clickhouse)


@pytest.fixture
async def iso(stack: Stack, tmp_path: Path) -> AsyncIterator[Isolation]:
    """A fresh topic prefix (topics provisioned), Redis key prefix, ClickHouse database and KEK."""
    isolation = new_isolation(stack, tmp_path)
    await provision(isolation)
    yield isolation
    # Thousands of tests x ~25 partitions would otherwise pile up in the shared broker (open files, memory).
    await drop_topics(isolation)


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[PrivateKafka]:
    """A started broker only this test uses; stopped (if still running) at the end."""
    broker = PrivateKafka(tmp_path / "private-kafka")
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every log record of the test at DEBUG, formatted as production formats it (for the secret-leak checks)."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    old = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(old)
