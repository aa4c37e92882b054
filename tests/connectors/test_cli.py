"""`spendstream connectors import WORKSPACE FILE`: a valid file is published, one record per provider and day;
a bad line is named by line and field on stderr, exit 2, nothing published."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spendstream.common.topics import CONNECTORS_USAGE, topic_name
from tests.ingest.topics import read_all
from tests.support import Isolation

pytestmark = pytest.mark.integration

HEADER = "day,provider,model,input_tokens,output_tokens,cost\n"


def _cli(iso: Isolation, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spendstream.cli", *args],
        env={**os.environ, **iso.env()},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_a_bad_line_is_named_and_nothing_is_published_then_a_good_file_is(iso: Isolation, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER + "2026-02-01,mistral,m,10,2,0.5\n2026-02-01,mistral,m,ten,2,0.5\n")
    run = _cli(iso, "connectors", "import", "ws_cli", str(bad))
    assert run.returncode == 2
    assert "line 3, field input_tokens: invalid_count" in run.stderr and "ten" not in run.stderr
    topic = topic_name(CONNECTORS_USAGE, iso.prefix)
    assert await read_all(iso.stack.kafka, topic) == []

    good = tmp_path / "good.csv"
    good.write_text(HEADER + "2026-02-01,mistral,m,10,2,0.5\n2026-02-02,mistral,m,4,1,0.25\n")
    run = _cli(iso, "connectors", "import", "ws_cli", str(good))
    assert run.returncode == 0, run.stderr
    assert [d["day"] for d in json.loads(run.stdout)["imported"]] == ["2026-02-01", "2026-02-02"]
    keys = sorted((r.key or b"").decode() for r in await read_all(iso.stack.kafka, topic))
    assert keys == ["ws_cli/csv-mistral/2026-02-01", "ws_cli/csv-mistral/2026-02-02"]
