"""Fixtures of the SDK tests: a real spendstream (ingest and rollup as OS processes on real ports), a workspace of
each test's own, and reading its usage back."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import (
    Isolation,
    ServiceProcess,
    Stack,
    auth,
    create_workspace,
    drop_topics,
    new_isolation,
    provision,
)

pytestmark = [pytest.mark.integration]


@dataclass
class Spendstream:
    """A running ingest and rollup sharing one isolation."""

    iso: Isolation
    ingest: ServiceProcess
    rollup: ServiceProcess | None

    async def workspace(self) -> Workspace:
        ws = await create_workspace(self.iso)
        workspace = Workspace(self, ws["workspace_id"], ws["ingest"], ws["read"])
        workspace.wait_until_known()
        return workspace


@dataclass
class Workspace:
    spendstream: Spendstream
    workspace_id: str
    ingest_key: str
    read_key: str

    @property
    def url(self) -> str:
        return self.spendstream.ingest.url

    def wait_until_known(self, timeout: float = 15.0) -> None:
        """ingest learns a new key from its control-plane topic within a poll: wait for it (an empty batch is a
        422 for a known key, a 401 for an unknown one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = httpx.post(f"{self.url}/v1/events", json={"events": []}, headers=auth(self.ingest_key))
            if answer.status_code != 401:
                return
            time.sleep(0.1)
        raise AssertionError("ingest never learnt the workspace's key")

    def usage(self, **params: Any) -> dict[str, Any]:
        rollup = self.spendstream.rollup
        assert rollup is not None, "this Spendstream runs no rollup"
        answer = httpx.get(f"{rollup.url}/v1/usage", params=params, headers=auth(self.read_key), timeout=10)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def usage_when(
        self, done: Callable[[dict[str, Any]], bool], timeout: float = 30.0, **params: Any
    ) -> dict[str, Any]:
        """/v1/usage once `done` holds for it (rollup stores within a second or two)."""
        deadline = time.monotonic() + timeout
        body = self.usage(**params)
        while not done(body):
            if time.monotonic() > deadline:
                raise AssertionError(f"usage not as expected within {timeout}s: {body['totals']}")
            time.sleep(0.2)
            body = self.usage(**params)
        return body


def start(iso: Isolation, tmp: Path, with_rollup: bool) -> Spendstream:
    # The tests poll with a workspace's key until ingest has learnt it: those 401s must not trip the brake on
    # guessing, which would then refuse this address for a minute.
    env = iso.env(AUTH_FAILURES_PER_ADDRESS="100000", AUTH_FAILURES_PER_KEY_PREFIX="100000")
    ingest = ServiceProcess("ingest", env, tmp / "ingest.log")
    rollup = None
    if with_rollup:
        # chDB allows one data directory per process: rollup's own.
        rollup = ServiceProcess("rollup", iso.env(DATA_DIR=str(tmp / "rollup-data")), tmp / "rollup.log")
    ingest.start()
    if rollup is not None:
        rollup.start()
    return Spendstream(iso, ingest, rollup)


def stop(running: Spendstream) -> None:
    running.ingest.terminate()
    if running.rollup is not None:
        running.rollup.terminate()


@pytest.fixture(scope="module")
async def spendstream(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Spendstream]:
    """ingest and rollup, shared by a module's tests (each test takes a workspace of its own)."""
    tmp = Path(tmp_path_factory.mktemp("sdk"))
    iso = new_isolation(stack, tmp)
    await provision(iso)
    running = start(iso, tmp, with_rollup=True)
    try:
        yield running
    finally:
        stop(running)
        await drop_topics(iso)


@pytest.fixture
async def workspace(spendstream: Spendstream) -> Workspace:
    return await spendstream.workspace()


@pytest.fixture
def meters() -> Iterator[list[Any]]:
    """Meters a test opens, closed at its end even when it fails (their threads would outlive it)."""
    opened: list[Any] = []
    yield opened
    for meter in opened:
        close = getattr(meter, "close", None)
        if close is not None:
            close(timeout=1.0)
