"""The SDK as an app installs it: wheels built by the project's own command, pip-installed into a clean
virtualenv with nothing of the services' stack, and working there against a running spendstream."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.sdk.conftest import Workspace

ROOT = Path(__file__).resolve().parents[2]
UV = str(Path.home() / ".local" / "bin" / "uv")
# What an app installing the SDK must never receive.
SERVICES_STACK = {"aiokafka", "kafka-python", "confluent-kafka", "faststream", "redis", "clickhouse-connect", "chdb"}
SERVICES_STACK |= {"spendstream-common", "spendstream-ingest", "spendstream-rollup", "fastapi", "litellm", "msgspec"}

SCRIPT = """
import json, os, sys
from spendstream_sdk import Meter
meter = Meter(url=os.environ["SPENDSTREAM_URL"], api_key=os.environ["SPENDSTREAM_API_KEY"])
event_id = meter.track(provider="openai", model="gpt-4o-mini", input_tokens=42, output_tokens=7, latency_ms=99)
closed = meter.close(timeout=30)
try:
    import spendstream.common
    common = True
except ImportError:
    common = False
print(json.dumps({"closed": closed, "sent": meter.stats.sent, "common": common, "typed": os.path.exists(
    os.path.join(os.path.dirname(sys.modules["spendstream_sdk"].__file__), "py.typed"))}))
"""


def test_the_wheel_installs_alone_into_a_clean_virtualenv_and_meters(workspace: Workspace, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    for package in ("spendstream-guard", "spendstream-sdk"):
        subprocess.run(
            [UV, "build", "--package", package, "--wheel", "-o", str(dist)], cwd=ROOT, check=True, timeout=300
        )
    wheels = sorted(p.name for p in dist.glob("*.whl"))
    assert [w.split("-")[0] for w in wheels] == ["spendstream_guard", "spendstream_sdk"]

    venv = tmp_path / "app-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    # The local wheels; their dependencies (httpx and what it needs) from PyPI.
    wheel_paths = [str(p) for p in sorted(dist.glob("*.whl"))]
    subprocess.run([python, "-m", "pip", "install", "--quiet", *wheel_paths], check=True, timeout=600)

    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=json"], check=True, capture_output=True, text=True, timeout=120
    )
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert {"spendstream-sdk", "spendstream-guard", "httpx"} <= installed
    assert not installed & SERVICES_STACK

    env = {"SPENDSTREAM_URL": workspace.url, "SPENDSTREAM_API_KEY": workspace.ingest_key, "PATH": "/usr/bin:/bin"}
    ran = subprocess.run([python, "-c", SCRIPT], env=env, check=True, capture_output=True, text=True, timeout=120)
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert result == {"closed": True, "sent": 1, "common": False, "typed": True}
    body = workspace.usage_when(lambda b: b["totals"]["requests"] == 1)
    assert (body["totals"]["input_tokens"], body["totals"]["output_tokens"]) == (42, 7)


def test_make_sdk_builds_both_wheels_with_uv() -> None:
    recipe = subprocess.run(["make", "-n", "sdk"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    assert "uv build --package spendstream-guard --wheel" in recipe.stdout
    assert "uv build --package spendstream-sdk --wheel" in recipe.stdout
