"""Hard-budget reservations: `python -m bench.reservations [--seconds N] [--rate R]`.

One alerts process (as deployed, `spendstream run alerts`) against the stack's Redis; every reservation falls
under two hard budgets (the workspace's and a feature's), so each is one Lua script checking and holding on two
ledgers. Two figures:
  * latency at a fixed offered rate (default 2,000 requests/s), open loop: each request has its scheduled send
    time, and its latency counts from then (a late send is the server's delay too), p50 and p99;
  * sustained reservations/s of the one process: closed loop, 64 connections, as fast as it answers, and the
    server's CPU time per reservation (from /proc), which bounds that rate when the cores are shared.
The client is a minimal HTTP/1.1 client on keep-alive connections (httpx would cost more CPU than the server
on this 2-core machine). The caps are far above what a run reserves, so every answer is a 201.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness import Bench, ServiceProcess, free_port, start_stack
from bench.stats import percentile

BODY = json.dumps({"estimated_cost_usd": "0.000001", "tags": {"feature": "chat"}}).encode()


class Connection:
    """One keep-alive HTTP/1.1 connection sending the same reservation request."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> None:
        self._reader = reader
        self._writer = writer
        self._request = request

    @classmethod
    async def open(cls, port: int, key: str) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (
            "POST /v1/reservations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
        )
        return cls(reader, writer, head.encode() + BODY)

    async def reserve(self) -> int:
        self._writer.write(self._request)
        head = (await self._reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        length = next((int(h.split(":", 1)[1]) for h in head[1:] if h.lower().startswith("content-length:")), 0)
        await self._reader.readexactly(length)
        return int(head[0].split(" ")[1])

    def close(self) -> None:
        self._writer.close()


async def fixed_rate(port: int, key: str, rate: float, seconds: float) -> tuple[list[float], int]:
    """Latencies (ms, from each request's scheduled time) at `rate` requests/s, and the count of non-201s."""
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(64):
        pool.put_nowait(await Connection.open(port, key))
    latencies: list[float] = []
    failed = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1

    async def one(due: float) -> None:
        nonlocal failed
        await asyncio.sleep(max(0.0, due - loop.time()))
        conn = await pool.get()
        try:
            status = await conn.reserve()
        finally:
            pool.put_nowait(conn)
        latencies.append(1000 * (loop.time() - due))
        failed += status != 201

    total = int(rate * seconds)
    await asyncio.gather(*(one(start + i / rate) for i in range(total)))
    while not pool.empty():
        pool.get_nowait().close()
    return latencies, failed


async def sustained(port: int, key: str, seconds: float, connections: int = 64) -> tuple[float, int]:
    """Reservations/s answered 201 by the process, closed loop over `connections`; and the count of non-201s."""
    conns = [await Connection.open(port, key) for _ in range(connections)]
    done = failed = 0
    deadline = time.monotonic() + seconds

    async def loop(conn: Connection) -> None:
        nonlocal done, failed
        while time.monotonic() < deadline:
            if await conn.reserve() == 201:
                done += 1
            else:
                failed += 1

    started = time.monotonic()
    await asyncio.gather(*(loop(c) for c in conns))
    elapsed = time.monotonic() - started
    for conn in conns:
        conn.close()
    return done / elapsed, failed


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(rate: float, seconds: float) -> dict[str, float]:
    bench = Bench(smoke=True, workdir=Path(tempfile.mkdtemp(prefix="spendstream-bench-")))
    ns = await bench.namespace("reservations", workspaces=1)
    ws = ns.workspaces[0]
    alerts = ServiceProcess(
        "alerts", bench.env(ns.prefix, free_port(), SPENDSTREAM_ROLLUP_URL=""), bench.workdir / "logs" / "alerts.log"
    )
    await alerts.start()
    try:
        async with httpx.AsyncClient(timeout=30.0, headers={"authorization": f"Bearer {ws.admin}"}) as client:
            for scope in (None, {"tag": "feature", "value": "chat"}):
                created = await client.post(
                    f"{alerts.url}/v1/budgets",
                    json={"name": "bench", "amount_usd": "1000000", "hard": True, "scope": scope, "forecast": False},
                )
                created.raise_for_status()
            await asyncio.sleep(1.0)  # the budgets travel through their compacted topic
        await sustained(alerts.port, ws.ingest, 1.0)  # warm-up: connections, script cache, JIT-free but caches
        latencies, failed_fixed = await fixed_rate(alerts.port, ws.ingest, rate, seconds)
        cpu_before = cpu_seconds(alerts.pid)
        per_second, failed_sustained = await sustained(alerts.port, ws.ingest, seconds)
        # CPU per reservation: what bounds the rate of one process on a machine whose cores are shared.
        cpu_per = (cpu_seconds(alerts.pid) - cpu_before) / (per_second * seconds)
    finally:
        await alerts.stop()
        await bench.cleanup()
    return {
        "offered_per_s": rate,
        "requests": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "max_ms": round(max(latencies), 3),
        "sustained_per_s": round(per_second),
        "server_cpu_us_per_reservation": round(cpu_per * 1e6),
        "non_201": failed_fixed + failed_sustained,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reservations", description=__doc__)
    parser.add_argument("--rate", type=float, default=2000.0, help="offered requests/s of the latency run")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each of the two runs")
    args = parser.parse_args(argv)
    start_stack()
    figures = asyncio.run(measure(args.rate, args.seconds))
    for name, value in figures.items():
        print(f"{name:>16}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
