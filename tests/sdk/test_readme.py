"""The README's examples of "Instrument an app", run as written against a running spendstream."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sdk.conftest import Workspace

ROOT = Path(__file__).resolve().parents[2]


def example(heading: str, language: str = "python") -> str:
    """The first fenced `language` block under the README's `### heading`."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"\n### {heading}\n", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    match = re.search(rf"```{language}\n(.*?)```", section, re.S)
    assert match is not None, f"no {language} block under {heading}"
    return match.group(1)


def run(code: str, workspace: Workspace) -> str:
    env = {
        **os.environ,
        "SPENDSTREAM_URL": workspace.url,
        "SPENDSTREAM_API_KEY": workspace.ingest_key,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # offline: the price table shipped with litellm
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_python_sdk_example(workspace: Workspace) -> None:
    out = run(example("The Python SDK"), workspace)
    assert "sent=2" in out and "dropped_queue_full=0" in out and "unmetered=1" in out
    body = workspace.usage_when(lambda b: b["totals"]["requests"] == 2, group_by="customer_id")
    assert (body["totals"]["input_tokens"], body["totals"]["cached_input_tokens"]) == (1200, 200)
    assert "cust-42" in {row["customer_id"] for row in body["rows"]}


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_litellm_example(workspace: Workspace) -> None:
    out = run(example("LiteLLM"), workspace)
    assert "It left the depot this morning." in out
    body = workspace.usage_when(lambda b: b["totals"]["requests"] == 1, group_by="customer_id")
    assert [row["customer_id"] for row in body["rows"]] == ["cust-42"]
    assert body["totals"]["input_tokens"] > 0 and body["totals"]["cost_usd"] != "0.000000000"


def test_the_proxy_config_names_the_callback_the_module_defines() -> None:
    config = example("LiteLLM", "yaml")
    assert "callbacks: spendstream_sdk.litellm.spendstream_callback" in config
