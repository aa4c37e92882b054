"""`python -m bench.sdk --smoke` runs end to end and prints every figure as a number (no timing thresholds)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_the_sdk_bench_prints_its_figures() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.sdk", "--smoke", "--senders", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=590,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    alone, sending = figures
    assert alone["us_per_event_median"] > 0 and alone["cpu_us_per_event_median"] > 0
    assert sending["events_per_s"] > 0
    assert (sending["sent"], sending["dropped"], sending["rejected"], sending["flushed"]) == (50_000, 0, 0, True)
