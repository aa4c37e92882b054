"""One bench run's isolation and processes: the stack, its own topics, workspaces, and the services it starts.

Every run uses its own topic prefix, Redis prefix, KEK and chDB directories, so it never touches the data of
anyone else on the shared broker, and it deletes its topics, keys and directories when it ends.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
from aiokafka.admin import AIOKafkaAdminClient

from spendstream.common.kafka import make_broker, provision_topics
from spendstream.common.settings import BaseServiceSettings
from spendstream.ingest.workspaces import ControlPlane

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
# The same jar cache scripts/stack.sh fills (it honours the same variables).
KAFKA_LIBS = Path(
    os.environ.get("SPENDSTREAM_KAFKA_LIBS")
    or Path(os.environ.get("SPENDSTREAM_STACK_DIR") or ROOT / ".stack") / "kafka" / "libs"
)


# The compaction bound of the bench's topics (segments roll and compact within seconds); production's is an hour.
COMPACTION_BOUND_SECONDS = 12.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_stack() -> None:
    """scripts/stack.sh start: idempotent, leaves the running broker and Redis alone.

    With SPENDSTREAM_KAFKA_BOOTSTRAP_SERVERS / SPENDSTREAM_REDIS_URL set, those services are used as they are.
    """
    script = str(ROOT / "scripts" / "stack.sh")
    # The limits run Kafka's own tools from the jars, even when the broker is someone else's.
    subprocess.run([script, "fetch"], check=True, stdout=subprocess.DEVNULL)
    if "SPENDSTREAM_REDIS_URL" not in os.environ:
        subprocess.run([script, "start-redis"], check=True, stdout=subprocess.DEVNULL)
    if "SPENDSTREAM_KAFKA_BOOTSTRAP_SERVERS" not in os.environ:
        subprocess.run([script, "start-kafka"], check=True, stdout=subprocess.DEVNULL)


@dataclass(frozen=True)
class Workspace:
    workspace_id: str
    ingest: str
    read: str
    admin: str


@dataclass
class Namespace:
    """One measurement's private topics (a prefix) and workspaces."""

    prefix: str
    workspaces: list[Workspace]


@dataclass
class Bench:
    smoke: bool
    workdir: Path
    profile: bool = False
    keep: bool = False  # keep the work directory (service logs, chDB data) for a post-mortem
    # Sustained events/s measured earlier in this run ("ingest", "rollup"): the fixed-load measurements offer
    # no more than the pipeline can take, or their latency would only measure a queue growing without bound.
    capacity: dict[str, float] = field(default_factory=dict)

    def fixed_load(self, wanted: float, *stages: str) -> float:
        """`wanted` events/s, or 80 % of the slowest measured stage when that is lower."""
        known = [self.capacity[s] for s in stages if s in self.capacity]
        return max(100.0, min([wanted, *(0.8 * c for c in known)]))

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    kafka: str = field(default_factory=lambda: os.environ.get("SPENDSTREAM_KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    redis: str = field(default_factory=lambda: os.environ.get("SPENDSTREAM_REDIS_URL", "redis://127.0.0.1:6379/0"))
    kek: str = field(default_factory=lambda: base64.b64encode(os.urandom(32)).decode())

    @property
    def root_prefix(self) -> str:
        return f"bench-{self.tag}-"

    def settings(self, prefix: str) -> BaseServiceSettings:
        return BaseServiceSettings(
            kafka_bootstrap_servers=self.kafka,
            redis_url=self.redis,
            topic_prefix=prefix,
            redis_prefix=f"{self.root_prefix}:",
            kek=self.kek,
            data_dir=self.workdir / "data",
            compaction_bound_seconds=COMPACTION_BOUND_SECONDS,
        )

    def env(self, prefix: str, port: int, **extra: str) -> dict[str, str]:
        """Environment of a service process started for this run."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SPENDSTREAM_")}
        env.update(
            {
                "SPENDSTREAM_KAFKA_BOOTSTRAP_SERVERS": self.kafka,
                "SPENDSTREAM_REDIS_URL": self.redis,
                "SPENDSTREAM_TOPIC_PREFIX": prefix,
                "SPENDSTREAM_REDIS_PREFIX": f"{self.root_prefix}:",
                "SPENDSTREAM_KEK": self.kek,
                "SPENDSTREAM_DATA_DIR": str(self.workdir / "data"),
                "SPENDSTREAM_HTTP_HOST": "127.0.0.1",
                "SPENDSTREAM_HTTP_PORT": str(port),
                "SPENDSTREAM_LOG_LEVEL": "WARNING",
                # The bench measures capacity, not the per-workspace limiter: lift it far above any reachable rate.
                "SPENDSTREAM_RATE_LIMIT_EVENTS_PER_SECOND": "1000000000",
                "SPENDSTREAM_RATE_LIMIT_BURST_EVENTS": "1000000000",
                # An erasure's receipt waits until compaction has removed the subject's records (retention's
                # shredding check): the bench's topics compact within seconds, as the tests' do.
                "SPENDSTREAM_COMPACTION_BOUND_SECONDS": str(COMPACTION_BOUND_SECONDS),
                "SPENDSTREAM_COMPACTION_CHECK_SECONDS": "0.5",
            }
        )
        env.update(extra)
        return env

    async def namespace(self, name: str, workspaces: int) -> Namespace:
        """Provision a fresh set of topics under `bench-<tag>-<name>.` and create enterprise workspaces."""
        prefix = f"{self.root_prefix}{name}."
        settings = self.settings(prefix)
        await provision_topics(settings)
        broker = make_broker(settings, "bench")
        await broker.connect()
        created: list[Workspace] = []
        try:
            plane = ControlPlane(settings, broker)
            for i in range(workspaces):
                ws, keys = await plane.create_workspace(f"bench-{name}-{i}", "enterprise")
                by_scope = {k.scope: k.key for k in keys}
                created.append(Workspace(ws.workspace_id, by_scope["ingest"], by_scope["read"], by_scope["admin"]))
        finally:
            await broker.stop()
        return Namespace(prefix, created)

    async def cleanup(self) -> None:
        """Delete this run's topics and Redis keys, then its directories (chDB data can be gigabytes)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka)
        await admin.start()
        try:
            mine = [t for t in await admin.list_topics() if t.startswith(self.root_prefix)]
            if mine:
                await admin.delete_topics(mine)
        finally:
            await admin.close()
        redis: aioredis.Redis = aioredis.Redis.from_url(self.redis)
        try:
            batch: list[bytes] = []
            async for key in redis.scan_iter(match=f"{self.root_prefix}*", count=5000):
                batch.append(key)
                if len(batch) >= 5000:
                    await redis.unlink(*batch)
                    batch = []
            if batch:
                await redis.unlink(*batch)
        finally:
            await redis.aclose()
        if self.keep:
            print(f"kept {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


class ServiceProcess:
    """`spendstream run SERVICE` as its own OS process, as it is deployed; ready when /readyz answers 200.
    `command` replaces `run SERVICE`, e.g. ("up",) for the monolith."""

    def __init__(
        self, service: str, env: dict[str, str], log_path: Path, command: tuple[str, ...] | None = None
    ) -> None:
        self.service = service
        self.command = command or ("run", service)
        self.env = env
        self.port = int(env["SPENDSTREAM_HTTP_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    async def start(self, timeout: float = 120.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "spendstream.cli", *self.command],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"{self.service} exited with {self._proc.returncode}; see {self.log_path}")
                try:
                    if (await client.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.service} not ready after {timeout}s; see {self.log_path}")

    async def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGTERM)
        for _ in range(300):
            if self._proc.poll() is not None:
                return
            await asyncio.sleep(0.1)
        self._proc.kill()
        self._proc.wait()

    async def metric(self, name: str) -> float:
        """The sum of every sample of a Prometheus metric on /metrics (0 when absent)."""
        async with httpx.AsyncClient(timeout=5.0) as client:
            text = (await client.get(f"{self.url}/metrics")).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
        return total


async def start_all(*services: ServiceProcess) -> None:
    """Start services side by side (their imports and replays overlap), ready when all are."""
    await asyncio.gather(*(svc.start() for svc in services))


async def rate_until(svc: ServiceProcess, metric: str, total: int, ready: float, timeout: float) -> float:
    """Events/s by a service's counter `metric`, from the first observed increase until it reaches `total`.

    Startup and the first batch are excluded, except in tiny runs where one batch holds everything.
    """
    first: tuple[float, float] | None = None
    while time.monotonic() < ready + timeout:
        count = await svc.metric(metric)
        now = time.monotonic()
        if count and first is None:
            first = (now, count)
        if count >= total and first is not None:
            if first[1] < total and now - first[0] > 0.5:
                return (count - first[1]) / (now - first[0])
            return count / (now - ready)
        await asyncio.sleep(0.2)  # /metrics costs the service CPU too: poll gently
    raise RuntimeError(f"{svc.service}: {metric} reached {await svc.metric(metric)} of {total} in {timeout}s")


async def run_json(*argv: str, timeout: float = 900.0) -> Any:
    """Run a helper process (`python -m bench.xxx ...`) and parse the JSON it prints last."""
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed ({proc.returncode}): {err.decode()[-2000:]}")
    return json.loads(out.decode().strip().splitlines()[-1])


async def python_json(module: str, config: dict[str, Any], timeout: float = 900.0) -> Any:
    return await run_json(sys.executable, "-m", module, json.dumps(config), timeout=timeout)


def background_load(url: str, keys: list[str], sizes: dict[str, Any]) -> asyncio.Task[Any]:
    """An open-loop load at `sizes["rate"]` for its warm-up and duration, from another process (bench.loadgen):
    the steady traffic the end-to-end and alert probes are measured under."""
    config = {
        "url": url,
        "keys": keys,
        "mode": "open",
        "rate": sizes["rate"],
        "warmup": sizes["warmup"],
        "duration": sizes["duration"],
    }
    return asyncio.create_task(python_json("bench.loadgen", config))
