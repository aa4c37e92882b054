"""`python -m bench.otlp --smoke` runs against a real ingest and prints a spans/s figure per encoding, every
export answered 200 with nothing refused (no timing thresholds)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(
    r"^OTLP (application/x-protobuf|application/json): ([\d,]+) GenAI spans/s accepted .*statuses (\{.*\});"
)


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_the_otlp_bench_prints_spans_per_second_for_both_encodings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.otlp", "--smoke"], cwd=ROOT, capture_output=True, text=True, timeout=290
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = {m[1]: (m[2], m[3]) for m in map(LINE.match, result.stdout.splitlines()) if m}
    assert set(found) == {"application/x-protobuf", "application/json"}, result.stdout
    for rate, statuses in found.values():
        assert int(rate.replace(",", "")) > 0 and re.fullmatch(r"\{'200': \d+\}", statuses), result.stdout
