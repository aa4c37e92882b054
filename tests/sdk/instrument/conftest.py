"""The local provider and a recording meter, for driving the real openai and anthropic packages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.providers import ProviderServer
from tests.sdk.instrument.recording import RecordingTracker


@pytest.fixture
def provider() -> Iterator[ProviderServer]:
    with ProviderServer() as server:
        yield server


@pytest.fixture
def tracker() -> RecordingTracker:
    return RecordingTracker()
