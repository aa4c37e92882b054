"""A hard cap under real concurrency: 1,000 reservations from several OS processes (each its own event loop and
HTTP client) at two alerts replicas (real processes, real ports, one Redis) that admit exactly N; settled by
usage events through ingest; replayed by a third replica in another consumer group. Throughout, an observer
reads the budget's state and committed + reserved never exceeds the cap."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.settings import IngestSettings
from tests.alerts.conftest import budget_body
from tests.support import Isolation, ServiceProcess, auth, create_workspace, eventually, serving, usage_event

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PROCESSES = 4
PER_PROCESS = 250
ESTIMATE = Decimal("0.01")
ADMITS = 237  # the cap admits exactly this many estimates
CAP = ESTIMATE * ADMITS


def _reserve_many(urls: list[str], key: str, count: int) -> list[tuple[int, str | None]]:
    """One OS process: `count` concurrent reservations spread over the replicas."""
    return asyncio.run(_reserve_async(urls, key, count))


async def _reserve_async(urls: list[str], key: str, count: int) -> list[tuple[int, str | None]]:
    limits = httpx.Limits(max_connections=25)
    async with httpx.AsyncClient(timeout=60.0, limits=limits, headers=auth(key)) as client:

        async def one(i: int) -> tuple[int, str | None]:
            body = {"estimated_cost_usd": str(ESTIMATE), "tags": {"feature": "chat"}}
            answer = await client.post(f"{urls[i % len(urls)]}/v1/reservations", json=body)
            return answer.status_code, answer.json().get("reservation_id")

        return await asyncio.gather(*(one(i) for i in range(count)))


class Observer:
    """Reads the budget's state (one atomic script per read) until stopped; keeps every observation."""

    def __init__(self, url: str, admin: str, budget_id: str) -> None:
        self._url = f"{url}/v1/budgets/{budget_id}"
        self._admin = admin
        self.seen: list[tuple[Decimal, Decimal]] = []
        self._stop = asyncio.Event()

    async def run(self) -> None:
        async with httpx.AsyncClient(headers=auth(self._admin), timeout=30.0) as client:
            while not self._stop.is_set():
                state = (await client.get(self._url)).json()["state"]
                self.seen.append((Decimal(state["committed_usd"]), Decimal(state["reserved_usd"])))
                await asyncio.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()


def real_cost(index: int) -> Decimal:
    """Each allowed call's actual cost: varied, never above the estimate."""
    return Decimal("0.001") * (1 + index % 10)


async def test_a_thousand_concurrent_reservations_from_four_processes_admit_exactly_what_the_cap_holds(
    iso: Isolation, tmp_path: Path
) -> None:
    ws = await create_workspace(iso)
    env = iso.env(ROLLUP_URL="")
    replicas = [ServiceProcess("alerts", env, tmp_path / f"alerts-{i}.log") for i in range(2)]
    for replica in replicas:
        replica.start()
    try:
        async with httpx.AsyncClient(headers=auth(ws["admin"]), timeout=30.0) as admin:
            created = await admin.post(
                f"{replicas[0].url}/v1/budgets",
                json=budget_body(
                    amount_usd=str(CAP), hard=True, thresholds=[100], scope={"tag": "feature", "value": "chat"}
                ),
            )
            assert created.status_code == 201, created.text
            budget_id = created.json()["budget_id"]

            async def everywhere() -> bool:
                answers = [await admin.get(f"{r.url}/v1/budgets/{budget_id}") for r in replicas]
                return all(a.status_code == 200 for a in answers)

            await eventually(everywhere, timeout=30)

        observer = Observer(replicas[1].url, ws["admin"], budget_id)
        watching = asyncio.create_task(observer.run())
        try:
            urls = [r.url for r in replicas]
            loop = asyncio.get_running_loop()
            with ProcessPoolExecutor(PROCESSES, mp_context=multiprocessing.get_context("spawn")) as pool:
                parts = await asyncio.gather(
                    *(
                        loop.run_in_executor(pool, _reserve_many, urls, ws["ingest"], PER_PROCESS)
                        for _ in range(PROCESSES)
                    )
                )
            answers = [a for part in parts for a in part]
            assert len(answers) == PROCESSES * PER_PROCESS
            assert {status for status, _ in answers} == {201, 402}
            allowed = [rid for status, rid in answers if status == 201 and rid is not None]
            assert len(allowed) == ADMITS
            observed_while_reserving = len(observer.seen)

            # Settle: each allowed call's usage event carries its reservation id and its real cost.
            costs = {rid: real_cost(i) for i, rid in enumerate(allowed)}
            events = [
                usage_event(reservation_id=rid, cost_usd=float(cost), tags={"feature": "chat"})
                for rid, cost in costs.items()
            ]
            batches = len(range(0, len(events), 50))
            async with serving([create_ingest(iso.settings(IngestSettings))]) as ingest:
                for start in range(0, len(events), 50):
                    sent = await ingest.post(
                        "/v1/events", json={"events": events[start : start + 50]}, headers=auth(ws["ingest"])
                    )
                    assert sent.status_code == 202 and sent.json()["accepted"] == len(events[start : start + 50])

            settled = (str(sum(costs.values(), Decimal(0)).quantize(Decimal("0.000000001"))), "0.000000000")

            async def final_state() -> dict[str, Any] | None:
                async with httpx.AsyncClient(headers=auth(ws["admin"])) as admin:
                    state: dict[str, Any] = (await admin.get(f"{replicas[0].url}/v1/budgets/{budget_id}")).json()[
                        "state"
                    ]
                return state if (state["committed_usd"], state["reserved_usd"]) == settled else None

            await eventually(final_state, timeout=60)
            assert observed_while_reserving > 0 and len(observer.seen) > observed_while_reserving
            over = [(c, r) for c, r in observer.seen if c + r > CAP]
            assert over == [], f"{len(over)} of {len(observer.seen)} observations above the cap"
        finally:
            observer.stop()
            await watching

        # A replica of another consumer group replays the whole topic: nothing is counted or settled twice.
        replay = ServiceProcess("alerts", {**env, "SPENDSTREAM_GROUP_ID": "replay"}, tmp_path / "replay.log")
        replay.start()
        try:

            async def replayed() -> bool:
                text = httpx.get(f"{replay.url}/metrics").text
                skipped = [
                    s.value
                    for family in text_string_to_metric_families(text)
                    for s in family.samples
                    if s.name == "spendstream_alerts_records_already_counted_total"
                ]
                return skipped == [float(batches)]

            await eventually(replayed, timeout=60)
            state = await final_state()
            assert state is not None
        finally:
            replay.terminate()
    finally:
        for replica in replicas:
            replica.terminate()
