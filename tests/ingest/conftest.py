"""Fixtures of the ingest tests: one running ingest service per module for the many read-only refusal checks."""

from __future__ import annotations

import io
import logging
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from spendstream.common.logs import JsonFormatter
from spendstream.ingest.app import create_service
from spendstream.ingest.settings import IngestSettings
from tests.support import Isolation, Stack, create_workspace, free_port, new_isolation, provision, serving


@dataclass(frozen=True)
class Running:
    iso: Isolation
    client: httpx.AsyncClient
    workspace: dict[str, Any]


@pytest.fixture(scope="module")
async def running(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    """An ingest service with one `team` workspace, shared by the tests of a module (they must not mutate it)."""
    iso = new_isolation(stack, Path(tmp_path_factory.mktemp("ingest")))
    await provision(iso)
    workspace = await create_workspace(iso)
    async with serving([create_service(iso.settings(IngestSettings))]) as client:
        yield Running(iso, client, workspace)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A redis-server only this test uses: it can be killed, and a SCAN over it sees only this test's keys."""
    port = free_port()
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    try:
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert proc.poll() is None, "redis-server exited"
                time.sleep(0.05)
    finally:
        client.close()
    yield url, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every log record of the test as production formats it: spendstream's at DEBUG, the libraries' at INFO."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    root, ours = logging.getLogger(), logging.getLogger("spendstream")
    old_root, old_ours = root.level, ours.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    ours.setLevel(logging.DEBUG)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(old_root)
    ours.setLevel(old_ours)
