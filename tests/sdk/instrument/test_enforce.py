"""instrument(..., enforce=True) on the real openai package, against the local provider and a real alerts service on
a real port: a call over a hard budget raises BudgetExceeded before the provider receives anything; a call within
it carries its reservation id on its usage event, which settles it through ingest and alerts; a call the provider
fails releases its estimate at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from spendstream.alerts.app import create_service as create_alerts
from spendstream.ingest.app import create_service as create_ingest
from spendstream.ingest.settings import IngestSettings
from spendstream_sdk import BudgetExceeded, BudgetGate, BudgetUnavailable, Meter
from spendstream_sdk.instrument import instrument
from tests.alerts.conftest import alerts_settings, budget_body
from tests.alerts.receivers import listening
from tests.providers import ProviderServer
from tests.sdk.instrument.recording import RecordingTracker
from tests.support import Isolation, auth, create_workspace, eventually, free_port

pytestmark = pytest.mark.integration

MESSAGES: list[Any] = [{"role": "user", "content": "Summarise the contract"}]
CHAT = "/v1/chat/completions"


class Alerts:
    def __init__(self, url: str, workspace: dict[str, Any], budget_id: str) -> None:
        self.url = url
        self.workspace = workspace
        self.budget_id = budget_id
        self.gate = BudgetGate(url=url, api_key=workspace["ingest"])

    async def reserved(self) -> Decimal:
        async with httpx.AsyncClient(headers=auth(self.workspace["admin"])) as client:
            budget = (await client.get(f"{self.url}/v1/budgets/{self.budget_id}")).json()
        return Decimal(budget["state"]["reserved_usd"])


@pytest.fixture
async def alerts(iso: Isolation) -> AsyncIterator[Alerts]:
    """alerts on a real port with one hard budget of 0.001 USD on feature=chat."""
    ws = await create_workspace(iso)
    async with listening(create_alerts(alerts_settings(iso))) as url:
        async with httpx.AsyncClient(headers=auth(ws["admin"])) as client:
            scope = {"tag": "feature", "value": "chat"}
            created = await client.post(
                f"{url}/v1/budgets", json=budget_body(amount_usd="0.001", hard=True, scope=scope)
            )
            assert created.status_code == 201, created.text
        yield Alerts(url, ws, created.json()["budget_id"])


async def test_a_call_over_a_hard_budget_raises_before_the_provider_receives_a_request(
    alerts: Alerts, provider: ProviderServer, tracker: RecordingTracker
) -> None:
    with openai.OpenAI(base_url=provider.openai_url, api_key="sk-test", max_retries=0) as original:
        client = instrument(original, tracker, tags={"feature": "chat"}, enforce=alerts.gate)

        # gpt-4o-mini: 6e-7 USD per output token, so max_tokens=4000 alone estimates 0.0024 USD, over 0.001.
        def over() -> Any:
            return client.chat.completions.create(model="gpt-4o-mini", max_tokens=4000, messages=MESSAGES)

        with pytest.raises(BudgetExceeded) as refused:
            await asyncio.to_thread(over)
        assert refused.value.budget_id == alerts.budget_id
        assert Decimal(refused.value.remaining_usd) == Decimal("0.001")
        assert provider.received(CHAT) == [] and tracker.events == []

        def within() -> Any:
            return client.chat.completions.create(model="gpt-4o-mini", max_tokens=100, messages=MESSAGES)

        answer = await asyncio.to_thread(within)
        assert answer.choices and len(provider.received(CHAT)) == 1
        [event] = tracker.events
        assert str(event["reservation_id"]).startswith("rsv_")
        assert await alerts.reserved() > 0  # until the usage event settles it

        # A call no hard budget covers is not held, and its event names no reservation.
        uncovered = instrument(original, tracker, tags={"feature": "search"}, enforce=alerts.gate)
        await asyncio.to_thread(
            lambda: uncovered.chat.completions.create(model="gpt-4o-mini", max_tokens=4000, messages=MESSAGES)
        )
        assert "reservation_id" not in tracker.events[-1]


async def test_an_async_streamed_call_is_reserved_and_a_failed_call_releases_its_estimate(
    alerts: Alerts, provider: ProviderServer, tracker: RecordingTracker
) -> None:
    async with openai.AsyncOpenAI(base_url=provider.openai_url, api_key="sk-test", max_retries=0) as original:
        client = instrument(original, tracker, tags={"feature": "chat"}, enforce=alerts.gate)
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", max_tokens=100, messages=MESSAGES, stream=True
        )
        async for _ in stream:
            pass
        [event] = tracker.events
        assert str(event["reservation_id"]).startswith("rsv_")
        held = await alerts.reserved()

        provider.fail(500, path=CHAT)
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="gpt-4o-mini", max_tokens=100, messages=MESSAGES)
        assert await alerts.reserved() == held  # the failed call's estimate is already released
        with pytest.raises(BudgetExceeded):
            await client.chat.completions.create(model="gpt-4o-mini", max_tokens=4000, messages=MESSAGES)
        assert len(provider.received(CHAT)) == 2


async def test_enforcement_fails_closed_when_spendstream_cannot_answer(
    provider: ProviderServer, tracker: RecordingTracker
) -> None:
    nowhere = BudgetGate(url=f"http://127.0.0.1:{free_port()}", api_key="ssk_ingest_x", timeout=1.0)
    async with openai.AsyncOpenAI(base_url=provider.openai_url, api_key="sk-test", max_retries=0) as original:
        client = instrument(original, tracker, enforce=nowhere)
        with pytest.raises(BudgetUnavailable) as unavailable:
            await client.chat.completions.create(model="gpt-4o-mini", max_tokens=10, messages=MESSAGES)
        assert unavailable.value.code == "ConnectError"
    assert provider.received(CHAT) == [] and tracker.events == []


async def test_the_meter_s_usage_event_settles_the_reservation_through_ingest_and_alerts(
    iso: Isolation, alerts: Alerts, provider: ProviderServer
) -> None:
    async with listening(create_ingest(iso.settings(IngestSettings))) as ingest_url:
        meter = Meter(url=ingest_url, api_key=alerts.workspace["ingest"])
        try:
            with openai.OpenAI(base_url=provider.openai_url, api_key="sk-test", max_retries=0) as original:
                client = instrument(original, meter, tags={"feature": "chat"}, enforce=alerts.gate)

                def streamed() -> list[Any]:
                    return list(
                        client.chat.completions.create(
                            model="gpt-4o-mini", max_tokens=100, messages=MESSAGES, stream=True
                        )
                    )

                await asyncio.to_thread(streamed)
                assert await alerts.reserved() > 0
                assert await asyncio.to_thread(meter.flush, 30)

                async def settled() -> dict[str, Any] | None:
                    async with httpx.AsyncClient(headers=auth(alerts.workspace["admin"])) as http:
                        state: dict[str, Any] = (await http.get(f"{alerts.url}/v1/budgets/{alerts.budget_id}")).json()[
                            "state"
                        ]
                    return state if state["reserved_usd"] == "0.000000000" else None

                state = await eventually(settled, timeout=30)
                # The actual cost (priced from the usage the provider reported) replaced the estimate.
                assert Decimal(state["committed_usd"]) > 0
        finally:
            await asyncio.to_thread(meter.close)
