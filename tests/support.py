"""Helpers the test tiers share: isolated settings per test, running services in-process, sample events."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiokafka.admin import AIOKafkaAdminClient

from spendstream.common.kafka import make_broker, provision_topics
from spendstream.common.records import AuditRecord
from spendstream.common.service import Service, build_http_app
from spendstream.common.settings import BaseServiceSettings
from spendstream.common.topics import AUDIT_RECORDS, topic_name
from spendstream.ingest.workspaces import ControlPlane
from tests.ingest.topics import read_all

S = TypeVar("S", bound=BaseServiceSettings)
T = TypeVar("T")


# The test topics' compaction bound: their segments roll and compact within seconds (the stack's broker runs
# its cleaner every second, scripts/kafka/server.properties.in), so an erasure is verified within a test.
TEST_COMPACTION_BOUND_SECONDS = 12.0


@dataclass(frozen=True)
class Stack:
    """Endpoints of the real services the integration tiers run against."""

    kafka: str
    redis: str
    clickhouse: str


@dataclass(frozen=True)
class Isolation:
    """Everything that keeps one test's data apart from another's on the shared stack."""

    stack: Stack
    prefix: str
    database: str
    kek: str
    data_dir: Path

    def settings(self, cls: type[S], **overrides: Any) -> S:
        values: dict[str, Any] = {
            "kafka_bootstrap_servers": self.stack.kafka,
            "redis_url": self.stack.redis,
            "clickhouse_url": self.stack.clickhouse,
            "topic_prefix": self.prefix,
            "redis_prefix": f"{self.prefix}",
            "kek": self.kek,
            "data_dir": self.data_dir,
            "compaction_bound_seconds": TEST_COMPACTION_BOUND_SECONDS,
        }
        if "clickhouse_database" in cls.model_fields:
            values["clickhouse_database"] = self.database
        if "compaction_check_seconds" in cls.model_fields:
            values["compaction_check_seconds"] = 0.5  # retention re-reads the topics often within the test bound
        values.update(overrides)
        return cls(**values)

    def env(self, **overrides: str) -> dict[str, str]:
        """The same isolation as SPENDSTREAM_* variables, for services run as OS processes."""
        values = {
            "KAFKA_BOOTSTRAP_SERVERS": self.stack.kafka,
            "REDIS_URL": self.stack.redis,
            "TOPIC_PREFIX": self.prefix,
            "REDIS_PREFIX": self.prefix,
            "KEK": self.kek,
            "CLICKHOUSE_DATABASE": self.database,
            "DATA_DIR": str(self.data_dir),
            "COMPACTION_BOUND_SECONDS": str(TEST_COMPACTION_BOUND_SECONDS),
            "COMPACTION_CHECK_SECONDS": "0.5",
        }
        values.update(overrides)
        return {f"SPENDSTREAM_{k.upper()}": v for k, v in values.items()}


def new_isolation(stack: Stack, data_dir: Path) -> Isolation:
    tag = uuid.uuid4().hex[:10]
    return Isolation(
        stack=stack,
        prefix=f"t{tag}.",
        database=f"t_{tag}",
        kek=base64.b64encode(os.urandom(32)).decode(),
        data_dir=data_dir,
    )


async def provision(iso: Isolation) -> None:
    await provision_topics(iso.settings(BaseServiceSettings))


async def drop_topics(iso: Isolation) -> None:
    """Delete the isolation's topics. Best effort: a broker a test stopped on purpose must not fail teardown."""
    admin = AIOKafkaAdminClient(bootstrap_servers=iso.stack.kafka, request_timeout_ms=10_000)
    try:
        await admin.start()
        names = [t for t in await admin.list_topics() if t.startswith(iso.prefix)]
        if names:
            await admin.delete_topics(names)
    except Exception as exc:  # aiokafka raises many types; none may hide the test's own result
        warnings.warn(f"could not delete the test topics {iso.prefix}*: {type(exc).__name__}", stacklevel=1)
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


@asynccontextmanager
async def serving(services: Sequence[Service]) -> AsyncIterator[httpx.AsyncClient]:
    """Run services' lifespans in this event loop and yield an HTTP client bound to their ASGI app."""
    app = build_http_app(services)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://spendstream.test") as client:
            yield client


async def create_workspace(iso: Isolation, name: str = "test", plan: str = "team") -> dict[str, Any]:
    """A workspace with its three keys, written to the isolated control-plane topics."""
    settings = iso.settings(BaseServiceSettings)
    broker = make_broker(settings, "tests")
    await broker.connect()
    try:
        workspace, keys = await ControlPlane(settings, broker).create_workspace(name, plan)
    finally:
        await broker.stop()
    return {"workspace_id": workspace.workspace_id, **{k.scope: k.key for k in keys}}


async def audit_records(iso: Isolation) -> list[AuditRecord]:
    """Every record on the isolation's audit topic up to its current end, in the order each partition holds them."""
    records = await read_all(iso.stack.kafka, topic_name(AUDIT_RECORDS, iso.prefix))
    return [AUDIT_RECORDS.record.decode(r.value) for r in records if r.value]


def usage_event(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "provider": "openai",
        "model": "gpt-4o-mini",
        "input_tokens": 1000,
        "output_tokens": 200,
        "latency_ms": 420,
        "cost_usd": 0.25,
        "timestamp": datetime.now(UTC).isoformat(),
        "tags": {"feature": "chat", "customer_id": "cust-1"},
    }
    event.update(overrides)
    return event


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 15.0, interval: float = 0.1) -> T:
    """Poll until `check` returns a truthy value; fail with the last value after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: T | None = None
    while asyncio.get_running_loop().time() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s; last value: {last!r}")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateKafka:
    """A broker of the test's own (scripts/stack.sh on free ports and a private data dir), for tests that stop,
    kill or restart Kafka without disturbing the shared broker other tests use."""

    def __init__(self, state_dir: Path) -> None:
        root = Path(__file__).resolve().parents[1]
        self._script = str(root / "scripts" / "stack.sh")
        self.port = free_port()
        self._env = {
            **os.environ,
            "SPENDSTREAM_STACK_DIR": str(state_dir),
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(free_port()),
            "SPENDSTREAM_KAFKA_LIBS": str(root / ".stack" / "kafka" / "libs"),
        }
        self.bootstrap = f"127.0.0.1:{self.port}"

    def _run(self, action: str, **env: str) -> None:
        import subprocess

        subprocess.run([self._script, action], env={**self._env, **env}, check=True)

    def start(self) -> None:
        self._run("fetch")
        self._run("start-kafka")

    def stop(self) -> None:
        self._run("stop-kafka")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as in a crashed or lost broker."""
        self._run("stop-kafka", KAFKA_STOP_SIGNAL="KILL")


class PrivateRedis:
    """A redis-server of the test's own on a free port, so a test can stop and restart Redis safely."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._dir = data_dir
        self._proc: Any = None

    def start(self) -> None:
        import shutil
        import socket
        import subprocess
        import time

        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; run scripts/stack.sh start-redis once")
        self._dir.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self._dir),
                "--save",
                "",
                "--appendonly",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("private redis did not start")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=15)
            self._proc = None


class ServiceProcess:
    """One spendstream service as a real OS process (`python -m spendstream.<name>`), so tests can SIGKILL it."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path, module: str | None = None) -> None:
        self.name = name
        self.module = module or f"spendstream.{name}"  # a test wrapper that injects a fault, if given
        self.port = free_port()
        self._env = {**os.environ, **env, "SPENDSTREAM_HTTP_PORT": str(self.port)}
        self._log_path = log_path
        self._proc: Any = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 60.0) -> None:
        import subprocess
        import sys
        import time

        log = self._log_path.open("ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", self.module], env=self._env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()  # the child holds its own descriptor; ours would leak (ResourceWarning is an error here)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self._proc.returncode}; see {self._log_path}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready within {ready_timeout}s; see {self._log_path}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no offset commit, as in an OOM kill or a lost node."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=15)
            self._proc = None

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM and wait: the graceful path (finish the batch, commit, close)."""
        if self._proc is None:
            return 0
        self._proc.terminate()
        code = int(self._proc.wait(timeout=timeout))
        self._proc = None
        return code


async def member_key(iso: Isolation, workspace_id: str, role: str, scope: str = "admin") -> tuple[str, str]:
    """A member of `role` in the workspace (on people.members.v1) and a key of `scope` that member issued:
    (member_id, key). The key never exceeds the member's role (access.py)."""
    from spendstream.common.kafka import Publisher
    from spendstream.common.records import MemberRecord
    from spendstream.common.topics import MEMBERS

    settings = iso.settings(BaseServiceSettings)
    member_id = f"mem_{uuid.uuid4().hex[:16]}"
    now = datetime.now(UTC)
    record = MemberRecord.model_validate(
        {"member_id": member_id, "workspace_id": workspace_id, "role": role, "created_at": now, "updated_at": now}
    )
    broker = make_broker(settings, "tests")
    await broker.connect()
    try:
        await Publisher(broker, MEMBERS, iso.prefix).publish(record, member_id)
        issued = await ControlPlane(settings, broker).issue_key(workspace_id, scope, issued_by=member_id)  # type: ignore[arg-type]
    finally:
        await broker.stop()
    return member_id, issued.key
