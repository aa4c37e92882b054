"""`python -m bench.console_browser --smoke` serves a seeded workspace with `spendstream up`, signs an owner in in
Chromium and prints, for every page of the console, how long it took to become usable (no timing thresholds)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from spendstream.console.pages import NAVIGATION

ROOT = Path(__file__).resolve().parents[2]
FIGURE = re.compile(r"^[\d,]+$")


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_the_console_browser_bench_prints_every_pages_figures_and_no_problem() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.console_browser", "--smoke"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=290,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "PROBLEM" not in result.stdout, result.stdout
    lines = [line for line in result.stdout.splitlines() if line.startswith("|")]
    header, rows = _cells(lines[0]), [_cells(line) for line in lines[2:]]
    assert [row[0] for row in rows] == list(NAVIGATION.values()), result.stdout
    for row in rows:
        for column, cell in list(zip(header, row, strict=True))[1:-1]:
            if column.startswith("LCP"):
                continue  # reported only when the browser has painted a candidate; "-" otherwise
            assert FIGURE.match(cell), f"{row[0]}: {column} is {cell!r}\n{result.stdout}"
        assert row[-1] in ("yes", "**no**")
    # The Overview showed the seeded workspace's requests of this month, a number.
    shown = re.search(r"the Overview shows ([\d,]+) requests this month", result.stdout)
    assert shown is not None, result.stdout
