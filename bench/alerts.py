"""Alerts: an accepted event (its 202 received) until the budget's webhook is delivered, at a fixed load.

ingest and alerts run as separate processes; bench.loadgen offers the background load to six workspaces. In a
seventh, one budget per probe (scoped to the probe's own customer_id, 1 USD, one threshold at 100 %) points its
webhook at a receiver in this process; each probe event costs 2 USD, so it crosses its budget alone. A probe's
latency is the time from its 202 to the webhook request arriving at the receiver.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from bench.harness import Bench, ServiceProcess, background_load, free_port, start_all
from bench.stats import Spread, percentile


@dataclasses.dataclass(frozen=True)
class AlertFigures:
    rate: float
    achieved: Spread
    p50: Spread  # ms
    p99: Spread
    probes: int


def _sizes(smoke: bool) -> dict[str, Any]:
    if smoke:
        return {"reps": 1, "rate": 2_000.0, "warmup": 1.0, "duration": 2.0, "probe_every": 0.25}
    return {"reps": 3, "rate": 20_000.0, "warmup": 5.0, "duration": 20.0, "probe_every": 0.5}


class WebhookReceiver:
    """A minimal HTTP/1.1 server: notes when each path was first requested and answers 200."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                now = time.perf_counter()
                length = next((int(h.split(":", 1)[1]) for h in head[1:] if h.lower().startswith("content-length:")), 0)
                if length:
                    await reader.readexactly(length)
                self.arrivals.setdefault(head[0].split(" ")[1], now)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            writer.close()


async def _budgets(client: httpx.AsyncClient, url: str, admin: str, hook: str, tags: list[str]) -> None:
    for tag in tags:
        response = await client.post(
            f"{url}/v1/budgets",
            headers={"authorization": f"Bearer {admin}"},
            json={
                "name": f"bench {tag}",
                "amount_usd": "1",
                "scope": {"tag": "customer_id", "value": tag},
                "thresholds": [100],
                "webhooks": [{"url": f"{hook}/{tag}"}],
                "forecast": False,
                "spike_multiple": None,
            },
        )
        response.raise_for_status()


async def _probes(
    client: httpx.AsyncClient, ingest_url: str, key: str, tags: list[str], every: float, receiver: WebhookReceiver
) -> list[float]:
    accepted: dict[str, float] = {}
    for tag in tags:
        event = {
            "event_id": tag,
            "provider": "openai",
            "model": "gpt-4o-mini",
            "input_tokens": 10,
            "output_tokens": 5,
            "latency_ms": 100,
            "cost_usd": 2,
            "timestamp": datetime.now(UTC).isoformat(),
            "tags": {"customer_id": tag},
        }
        response = await client.post(
            f"{ingest_url}/v1/events", json={"events": [event]}, headers={"authorization": f"Bearer {key}"}
        )
        if response.status_code == 202:
            accepted[tag] = time.perf_counter()
        await asyncio.sleep(every)
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline and not all(f"/hook/{t}" in receiver.arrivals for t in accepted):
        await asyncio.sleep(0.05)
    missing = [t for t in accepted if f"/hook/{t}" not in receiver.arrivals]
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(accepted)} webhooks never arrived within 30 s")
    return [1000 * (receiver.arrivals[f"/hook/{t}"] - accepted[t]) for t in accepted]


async def measure(bench: Bench) -> AlertFigures:
    sizes = _sizes(bench.smoke)
    sizes["rate"] = bench.fixed_load(sizes["rate"], "ingest")
    ns = await bench.namespace("alerts", workspaces=7)
    load, probe = ns.workspaces[:6], ns.workspaces[6]
    receiver = WebhookReceiver()
    await receiver.start()
    hook = f"http://127.0.0.1:{receiver.port}/hook"
    ingest = ServiceProcess("ingest", bench.env(ns.prefix, free_port()), bench.workdir / "logs" / "alerts-ingest.log")
    alerts = ServiceProcess(
        "alerts",
        bench.env(ns.prefix, free_port(), SPENDSTREAM_WEBHOOK_ALLOW_PRIVATE="true", SPENDSTREAM_ROLLUP_URL=""),
        bench.workdir / "logs" / "alerts.log",
    )
    await start_all(ingest, alerts)
    per_rep = int(sizes["duration"] / sizes["probe_every"])
    p50s, p99s, achieved, probes = [], [], [], 0
    try:
        async with httpx.AsyncClient(timeout=60.0) as client:
            tags = [[f"alert-{bench.tag}-{rep}-{k}" for k in range(per_rep)] for rep in range(sizes["reps"])]
            await _budgets(client, alerts.url, probe.admin, hook, [t for rep in tags for t in rep])
            await asyncio.sleep(1.0)  # budgets travel through their compacted topic before the first probe
            for rep in range(sizes["reps"]):
                background = background_load(ingest.url, [w.ingest for w in load], sizes)
                await asyncio.sleep(sizes["warmup"])
                latencies = await _probes(client, ingest.url, probe.ingest, tags[rep], sizes["probe_every"], receiver)
                result = await background
                achieved.append(result["events_per_s"])
                p50s.append(percentile(latencies, 50))
                p99s.append(percentile(latencies, 99))
                probes += len(latencies)
    finally:
        await alerts.stop()
        await ingest.stop()
        await receiver.stop()
    return AlertFigures(sizes["rate"], Spread.of(achieved), Spread.of(p50s), Spread.of(p99s), probes)
