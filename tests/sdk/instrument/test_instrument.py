"""instrument() itself: what it accepts, and that the client packages stay optional."""

from __future__ import annotations

import subprocess
import sys

import pytest

from spendstream_sdk.instrument import instrument
from tests.sdk.instrument.recording import RecordingTracker


def test_instrument_refuses_what_is_not_an_openai_or_anthropic_client() -> None:
    with pytest.raises(TypeError, match="not builtins.object"):
        instrument(object(), RecordingTracker())


def test_importing_the_sdk_and_instrument_imports_neither_client_package() -> None:
    code = "import sys, spendstream_sdk.instrument; print('openai' in sys.modules, 'anthropic' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)

    assert result.stdout.split() == ["False", "False"]
