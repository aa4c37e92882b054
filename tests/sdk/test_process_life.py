"""A meter across fork() and interpreter exit, each in a fresh Python process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from tests.sdk.recorder import recording

ROOT = Path(__file__).resolve().parents[2]


def scenario(name: str, url: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.sdk.scenarios", name, url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_forked_child_sends_its_own_events_and_never_the_parents() -> None:
    with recording() as server:
        result = scenario("fork", server.url)
    parent, child = result["parent"], result["child"]
    sent = Counter(server.stored_ids)
    assert sent == Counter(parent["ids"] + child["ids"])  # every event once: none twice, none lost
    assert child["flushed"] and parent["flushed"]
    # The child's meter started empty: its counters are its own two events.
    assert (child["stats"]["tracked"], child["stats"]["sent"]) == (2, 2)
    assert (parent["stats"]["tracked"], parent["stats"]["sent"]) == (3, 3)
    by_feature = {e["event_id"]: e["tags"]["feature"] for r in server.requests for e in r.events}
    assert {by_feature[i] for i in child["ids"]} == {"child"}


def test_the_exit_hook_sends_what_is_still_queued() -> None:
    with recording() as server:
        result = scenario("exit_without_close", server.url)
    assert sorted(server.stored_ids) == sorted(result["ids"])
