"""The connectors' HTTP client can only read: GET is its one request method; a provider's error body is never
repeated in what it raises."""

from __future__ import annotations

import inspect

import pytest

from spendstream.connectors.readonly_http import ProviderUnavailable, ReadOnlyHttp, Unauthorised
from tests.connectors.fake_providers import provider_server


def test_get_is_the_only_request_method() -> None:
    public = {name for name, _ in inspect.getmembers(ReadOnlyHttp, inspect.isfunction) if not name.startswith("_")}
    assert public == {"get", "close"}


async def _sleep(_: float) -> None:
    return None


@pytest.mark.parametrize(("status", "raised"), [(401, Unauthorised), (403, Unauthorised), (404, ProviderUnavailable)])
async def test_a_refusal_raises_by_status_without_the_body(status: int, raised: type[Exception]) -> None:
    with provider_server("openai", "k") as (url, state):
        state.faults = [(status, {})]
        http = ReadOnlyHttp(url, {}, max_attempts=3, backoff_seconds=0.01, max_wait_seconds=0.01, sleep=_sleep)
        try:
            with pytest.raises(raised) as caught:
                await http.get("/v1/organization/costs", {"start_time": 0})
        finally:
            await http.close()
        assert "injected" not in str(caught.value)
        assert len(state.requests) == 1  # a refusal is not retried


async def test_5xx_is_retried_up_to_the_attempts_then_reported_by_code() -> None:
    with provider_server("openai", "k") as (url, state):
        state.faults = [(503, {})] * 5
        sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)

        http = ReadOnlyHttp(url, {}, max_attempts=3, backoff_seconds=1.0, max_wait_seconds=60.0, sleep=sleep)
        try:
            with pytest.raises(ProviderUnavailable) as caught:
                await http.get("/v1/organization/costs", {"start_time": 0})
        finally:
            await http.close()
        assert caught.value.reason == "http_503"
        assert sleeps == [1.0, 2.0, 4.0]  # exponential back-off
        assert [m for m, _, _ in state.requests] == ["GET"] * 3
