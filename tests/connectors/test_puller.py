"""A connector's rounds against local servers answering as OpenAI's and Anthropic's usage and cost APIs: the days
it publishes equal what the servers reported (through several pages, a 429 with Retry-After, a 500), a late
correction of a past day replaces that day, a crash between a window's publish and its cursor commit resumes
with no gap and no double count, a refused key marks the connector unauthorised and alerts once, and the
servers saw nothing but GETs."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import pytest

from spendstream.common.records import ConnectorRecord, ConnectorState, DataAlert, ProviderDay, ProviderUsage
from spendstream.connectors.providers import ProviderReader
from spendstream.connectors.providers.anthropic import AnthropicReader
from spendstream.connectors.providers.openai import OpenAIReader
from spendstream.connectors.puller import Puller
from spendstream.connectors.settings import ConnectorsSettings
from tests.connectors.fake_providers import Figures, ProviderState, provider_server

NOW = datetime(2026, 3, 20, 15, 0, tzinfo=UTC)
TODAY = NOW.date()
ADMIN_KEY = "sk-admin-test-0123456789abcdef"
READERS: dict[str, ProviderReader] = {"openai": OpenAIReader(), "anthropic": AnthropicReader()}


class Sink:
    """What the puller published and saved; `crash_after` publishes raises on the next (a process dying between
    a window's publish and its cursor commit)."""

    def __init__(self) -> None:
        self.days: dict[str, ProviderDay] = {}  # by record key: a later publish replaces, as on the topic
        self.published = 0
        self.states: list[ConnectorState] = []
        self.alerts: list[DataAlert] = []
        self.sleeps: list[float] = []
        self.crash_after: int | None = None

    async def publish(self, day: ProviderDay) -> None:
        self.days[day.key] = day
        self.published += 1
        if self.crash_after is not None and self.published >= self.crash_after:
            self.crash_after = None
            raise SystemExit("killed between publish and cursor commit")

    async def save(self, state: ConnectorState) -> None:
        self.states.append(state)

    async def alert(self, alert: DataAlert) -> None:
        self.alerts.append(alert)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def rows(self) -> dict[tuple[date, str, str], ProviderUsage]:
        return {(d.day, r.model, r.project): r for d in self.days.values() for r in d.rows}


def _settings(base_url: str, **overrides: Any) -> ConnectorsSettings:
    values: dict[str, Any] = {
        "connector_openai_base_url": base_url,
        "connector_anthropic_base_url": base_url,
        "connector_backfill_days": 10,
        "connector_trailing_days": 3,
        "connector_window_days": 4,
        "connector_backoff_seconds": 0.5,
        **overrides,
    }
    return ConnectorsSettings(**values)


def _puller(settings: ConnectorsSettings, sink: Sink) -> Puller:
    return Puller(settings, READERS, sink.publish, sink.save, sink.alert, now=lambda: NOW, sleep=sink.sleep)


def _connector(provider: Literal["openai", "anthropic"]) -> ConnectorRecord:
    return ConnectorRecord(
        connector_id="con_1",
        workspace_id="ws_1",
        provider=provider,
        key_version=1,
        sealed_key=b"sealed",
        key_hint=ADMIN_KEY[-4:],
        created_at=NOW,
    )


def _fill(state: ProviderState, days: int) -> None:
    for i in range(days + 1):
        day = TODAY - timedelta(days=i)
        state.data[(day, "gpt-4o-mini", "proj_a")] = Figures(
            input_tokens=1000 + i, output_tokens=200 + i, cost=Decimal("0.123456") + i, cached=100, requests=10 + i
        )
        state.data[(day, "gpt-4o", "proj_b")] = Figures(
            input_tokens=50 * i, output_tokens=7, cost=Decimal("1.5"), cached=0, requests=1, cache_5m=3, cache_1h=2
        )


def _expected_openai(state: ProviderState) -> dict[tuple[date, str, str], ProviderUsage]:
    return {
        k: ProviderUsage(
            model=k[1],
            project=k[2],
            input_tokens=f.input_tokens,
            cached_input_tokens=f.cached,
            output_tokens=f.output_tokens,
            requests=f.requests,
            cost=f.cost,
        )
        for k, f in state.data.items()
    }


def _expected_anthropic(state: ProviderState) -> dict[tuple[date, str, str], ProviderUsage]:
    return {
        k: ProviderUsage(
            model=k[1],
            project=k[2],
            input_tokens=f.input_tokens + f.cached + f.cache_5m + f.cache_1h,
            cached_input_tokens=f.cached,
            cache_creation_input_tokens=f.cache_5m + f.cache_1h,
            cache_creation_1h_input_tokens=f.cache_1h,
            output_tokens=f.output_tokens,
            requests=None,
            cost=f.cost,
        )
        for k, f in state.data.items()
    }


def _same(got: dict[tuple[date, str, str], ProviderUsage], want: dict[tuple[date, str, str], ProviderUsage]) -> None:
    assert got.keys() == want.keys()
    for key, row in want.items():
        assert got[key].model_dump(exclude={"cost"}) == row.model_dump(exclude={"cost"}), key
        assert got[key].cost == row.cost, key  # Decimal equality: exact, not rounded


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_backfill_through_pages_429_and_500_publishes_exactly_what_the_provider_reported(
    provider: Literal["openai", "anthropic"],
) -> None:
    with provider_server(provider, ADMIN_KEY) as (url, state):
        _fill(state, 10)
        state.faults = [(429, {"Retry-After": "7"}), (500, {})]
        sink = Sink()
        final = await _puller(_settings(url), sink).pull(_connector(provider), ADMIN_KEY, None)

        assert final.status == "ok" and final.next_day == TODAY + timedelta(days=1)
        expected = _expected_openai(state) if provider == "openai" else _expected_anthropic(state)
        _same(sink.rows(), expected)
        # Every day of the backfill was published, empty or not.
        assert {d.day for d in sink.days.values()} == {TODAY - timedelta(days=i) for i in range(11)}
        assert 7.0 in sink.sleeps  # Retry-After honoured
        assert len(sink.sleeps) == 2  # and one backoff for the 500
        assert state.methods() == {"GET"}
        pages = [q.get("page") for _, _, q in state.requests]
        assert any(p is not None for p in pages)  # the reports paged


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_late_correction_of_a_past_day_replaces_that_day(provider: Literal["openai", "anthropic"]) -> None:
    with provider_server(provider, ADMIN_KEY) as (url, state):
        _fill(state, 10)
        sink = Sink()
        puller = _puller(_settings(url), sink)
        first = await puller.pull(_connector(provider), ADMIN_KEY, None)
        seen = len(state.requests)
        two_days_ago = TODAY - timedelta(days=2)
        state.data[(two_days_ago, "gpt-4o-mini", "proj_a")].cost = Decimal("9.87")
        del state.data[(two_days_ago, "gpt-4o", "proj_b")]  # a row the provider withdrew
        second = await puller.pull(_connector(provider), ADMIN_KEY, first)

        assert second.status == "ok"
        expected = _expected_openai(state) if provider == "openai" else _expected_anthropic(state)
        _same(sink.rows(), expected)
        # The second round re-read only the trailing window (and today), never the whole backfill again.
        starts = {(q.get("start_time") or q["starting_at"])[0] for _, _, q in state.requests[seen:]}
        trailing = TODAY - timedelta(days=3)
        assert starts == {
            str(int(datetime(trailing.year, trailing.month, trailing.day, tzinfo=UTC).timestamp()))
            if provider == "openai"
            else f"{trailing.isoformat()}T00:00:00Z"
        }


async def test_a_crash_between_publish_and_cursor_commit_resumes_without_gap_or_double_count() -> None:
    with provider_server("openai", ADMIN_KEY) as (url, state):
        _fill(state, 10)
        sink = Sink()
        settings = _settings(url)
        sink.crash_after = 6  # inside the second window (4 days a window)
        with pytest.raises(SystemExit):
            await _puller(settings, sink).pull(_connector("openai"), ADMIN_KEY, None)
        cursor = sink.states[-1]
        assert cursor.next_day == TODAY - timedelta(days=10) + timedelta(days=4)  # only the first window committed

        await _puller(settings, sink).pull(_connector("openai"), ADMIN_KEY, cursor)  # a new process, same cursor
        _same(sink.rows(), _expected_openai(state))
        # Re-published days replaced themselves: one record per day, the sums equal the provider's once.
        assert len(sink.days) == 11
        total = sum((r.cost or Decimal(0)) for d in sink.days.values() for r in d.rows)
        assert total == sum(f.cost for f in state.data.values())


@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_key_marks_the_connector_unauthorised_and_alerts_once(status: int) -> None:
    with provider_server("anthropic", ADMIN_KEY) as (url, state):
        _fill(state, 2)
        sink = Sink()
        puller = _puller(_settings(url), sink)
        state.faults = [(status, {})]
        first = await puller.pull(_connector("anthropic"), ADMIN_KEY, None)
        state.faults = [(status, {})]
        second = await puller.pull(_connector("anthropic"), ADMIN_KEY, first)

        assert first.status == second.status == "unauthorised"
        assert [a.kind for a in sink.alerts] == ["connector_unauthorised"]
        assert sink.alerts[0].connector_id == "con_1"
        assert ADMIN_KEY not in sink.alerts[0].model_dump_json()
        third = await puller.pull(_connector("anthropic"), ADMIN_KEY, second)
        assert third.status == "ok"


async def test_a_provider_that_keeps_failing_leaves_the_cursor_where_it_was() -> None:
    with provider_server("openai", ADMIN_KEY) as (url, state):
        _fill(state, 3)
        sink = Sink()
        state.faults = [(500, {})] * 10
        done = await _puller(_settings(url, connector_max_attempts=3), sink).pull(_connector("openai"), ADMIN_KEY, None)
        assert done.status == "failing" and done.reason == "http_500"
        assert done.next_day is None
        assert sink.days == {}
