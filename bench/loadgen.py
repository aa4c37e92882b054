"""HTTP load generator, run as its own process: `python -m bench.loadgen '<json config>'`; prints JSON.

Closed loop (`mode: closed`): `concurrency` requests always in flight, for the highest sustained rate.
Open loop (`mode: open`): requests sent on a fixed schedule of `rate` events/s whatever the answers; latency is
measured from the *scheduled* send time, so a stalled server cannot hide its queueing (no coordinated omission).
Only requests that complete inside the measurement window (after `warmup` seconds) are counted.

The client is a minimal HTTP/1.1 one over keep-alive asyncio streams (on uvloop when installed): the load
generator shares the 2 cores with the service it measures, and httpx took 0.3-0.42 of a core to offer
100,000 events/s (docs/benchmarks.md). It speaks only what the bench needs: POST with a Content-Length body,
answers with a Content-Length body.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench.events import BATCH, BodyTemplate
from bench.stats import percentile

MAX_OUTSTANDING = 512
TIMEOUT_SECONDS = 30.0


class Recorder:
    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.latencies: list[float] = []
        self.accepted = 0
        self.statuses: Counter[str] = Counter()

    def record(self, status: str, latency: float, accepted: int, done: float) -> None:
        if self.start <= done <= self.end:
            self.latencies.append(latency * 1000)
            self.accepted += accepted
            self.statuses[status] += 1


class Connection:
    """One keep-alive HTTP/1.1 connection; `post` sends one request and reads its answer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def post(self, head: bytes, body: bytes) -> tuple[int, bytes, bool]:
        """(status, body, the server closes the connection)."""
        self._writer.write(head + b"content-length: %d\r\n\r\n" % len(body))
        self._writer.write(body)
        headers = (await self._reader.readuntil(b"\r\n\r\n")).lower()
        status = int(headers[9:12])
        at = headers.find(b"\r\ncontent-length:")
        length = int(headers[at + 17 : headers.index(b"\r\n", at + 2)]) if at >= 0 else 0
        return status, await self._reader.readexactly(length), b"\r\nconnection: close" in headers

    def close(self) -> None:
        self._writer.close()


class Client:
    """A pool of keep-alive connections to one server: idle ones are reused, new ones opened on demand."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._authority = f"{self._host}:{self._port}"
        self._idle: list[Connection] = []

    def head(self, path: str, key: str) -> bytes:
        return (
            f"POST {path} HTTP/1.1\r\nhost: {self._authority}\r\ncontent-type: application/json\r\n"
            f"authorization: Bearer {key}\r\n"
        ).encode()

    async def post(self, head: bytes, body: bytes) -> tuple[str, bytes]:
        conn = self._idle.pop() if self._idle else None
        try:
            async with asyncio.timeout(TIMEOUT_SECONDS):
                if conn is None:
                    conn = await Connection.open(self._host, self._port)
                status, answer, closing = await conn.post(head, body)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError) as exc:
            if conn is not None:
                conn.close()
            return type(exc).__name__, b""
        if closing:
            conn.close()
        else:
            self._idle.append(conn)
        return str(status), answer

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()


async def _post(client: Client, template: BodyTemplate, head: bytes, ids: str) -> tuple[str, int]:
    status, answer = await client.post(head, template.body(ids))
    accepted = int(orjson.loads(answer).get("accepted", 0)) if status == "202" else 0
    return status, accepted


async def run(config: dict[str, Any]) -> dict[str, Any]:
    keys: list[str] = config["keys"]
    batch = int(config.get("batch", BATCH))
    template = BodyTemplate(batch)
    run_id = uuid.uuid4().hex[:10]
    concurrency = int(config.get("concurrency", 16))
    client = Client(config["url"])
    heads = [client.head("/v1/events", key) for key in keys]
    try:
        began = time.perf_counter()
        rec = Recorder(began + float(config["warmup"]), began + float(config["warmup"]) + float(config["duration"]))
        if config["mode"] == "closed":

            async def worker(w: int) -> None:
                seq = 0
                while time.perf_counter() < rec.end:
                    seq += 1
                    sent = time.perf_counter()
                    status, accepted = await _post(
                        client, template, heads[(w + seq) % len(heads)], f"{run_id}{w}x{seq}"
                    )
                    done = time.perf_counter()
                    rec.record(status, done - sent, accepted, done)

            await asyncio.gather(*(worker(w) for w in range(concurrency)))
        else:
            interval = batch / float(config["rate"])
            gate = asyncio.Semaphore(MAX_OUTSTANDING)
            tasks: set[asyncio.Task[None]] = set()

            async def one(k: int, scheduled: float) -> None:
                async with gate:
                    status, accepted = await _post(client, template, heads[k % len(heads)], f"{run_id}x{k}")
                done = time.perf_counter()
                rec.record(status, done - scheduled, accepted, done)

            k = 0
            while True:
                scheduled = began + k * interval
                if scheduled > rec.end:
                    break
                delay = scheduled - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(one(k, scheduled))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                k += 1
            if tasks:
                await asyncio.wait(tasks, timeout=TIMEOUT_SECONDS)
    finally:
        client.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    window = rec.end - rec.start
    return {
        "events_per_s": rec.accepted / window,
        "requests": len(rec.latencies),
        "p50_ms": percentile(rec.latencies, 50),
        "p99_ms": percentile(rec.latencies, 99),
        "max_ms": max(rec.latencies, default=float("nan")),
        "statuses": dict(rec.statuses),
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "wall_seconds": time.perf_counter() - began,
    }


def main() -> None:
    try:
        import uvloop

        factory: Any = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        print(json.dumps(runner.run(run(json.loads(sys.argv[1])))))


if __name__ == "__main__":
    main()
