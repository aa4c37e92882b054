"""The bench harness runs end to end in smoke mode and prints a figure for every row (no timing thresholds)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NUMBER = re.compile(r"^[\d,]+(\.\d+)?$")
EXPECTED_ROWS = (
    "ingest HTTP: accepted events/s",
    "ingest HTTP: p50 latency",
    "ingest HTTP: p99 latency",
    "rollup: events/s",
    "end to end: accepted → visible in /v1/usage, p50",
    "end to end: accepted → visible in /v1/usage, p99",
    "ingest Kafka-native intake: events/s",
    "alerts: accepted → webhook delivered, p50",
    "alerts: accepted → webhook delivered, p99",
    "erasure: one workspace among",
)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


@pytest.mark.integration
@pytest.mark.timeout(600)
def test_smoke_run_prints_every_row_with_numeric_figures_and_its_limit(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=590,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("|")]
    header, rows = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    assert not [line for line in result.stdout.splitlines() if line.startswith("FAILED")], result.stdout
    for expected in EXPECTED_ROWS:
        assert any(row[0].startswith(expected) for row in rows), f"no row {expected!r} in\n{result.stdout}"
    for row in rows:
        figures = dict(zip(header, row, strict=True))
        for column in ("ours (median)", "limit", "share of limit"):
            assert NUMBER.match(figures[column]), f"{row[0]}: {column} is {figures[column]!r}"
    saved = json.loads(out.read_text())
    assert len(saved["rows"]) == len(rows)
    assert saved["meta"]["machine"]["nproc"] >= 1
