"""The README's OTLP example, copied as a user would: its `export` lines set the environment (with a real ingest
key and the running server's address), its Python block runs as a program of its own, and the span it records
is read back from /v1/usage."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.ingest.otlp_support import ingest_and_rollup, live
from tests.ingest.test_otlp_intake import usage_when
from tests.support import Isolation, create_workspace

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

README = Path(__file__).resolve().parents[2] / "README.md"


def section() -> str:
    text = README.read_text()
    start = text.index("### OTLP (OpenTelemetry GenAI)")
    end = text.index("\n## ", start)
    return text[start:end]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section(), flags=re.S)


def exported(script: str, ingest_key: str, url: str) -> dict[str, str]:
    """The variables the bash block's `export` lines set, as the shell would expand them."""
    env: dict[str, str] = {}
    for name, value in re.findall(r"^export (\w+)=(.*)$", script, flags=re.M):
        value = value.strip('"').replace("$INGEST_KEY", ingest_key).replace("http://localhost:8080", url)
        env[name] = value
    return env


async def test_the_readme_sdk_example_is_metered(iso: Isolation, tmp_path: Path) -> None:
    (shell,) = blocks("bash")
    (program,) = blocks("python")
    ws = await create_workspace(iso)
    with live(ingest_and_rollup(iso)) as url:
        env = exported(shell, ws["ingest"], url)
        assert set(env) == {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS"}
        script = tmp_path / "example.py"
        script.write_text(program)
        run = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(script)],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        body = await usage_when(url, ws["read"], 1, group_by="provider,model,feature")
    assert len(body["rows"]) == 1
    assert body["rows"] == [
        row | {"provider": "openai", "model": "gpt-4o-mini", "feature": "chat", "requests": 1} for row in body["rows"]
    ]
    assert (body["totals"]["input_tokens"], body["totals"]["output_tokens"]) == (900, 120)


def test_the_readme_collector_example_posts_to_ingest_with_an_ingest_key() -> None:
    # No Collector runs here: the configuration is checked for what the route needs, as the Collector reads it.
    (config,) = blocks("yaml")
    exporter = yaml.safe_load(config)["exporters"]["otlphttp/spendstream"]
    assert exporter["headers"]["Authorization"].startswith("Bearer ")
    assert exporter["encoding"] == "proto"
    assert "traces" in yaml.safe_load(config)["service"]["pipelines"]
    assert not exporter["endpoint"].rstrip("/").endswith("/v1/traces")  # otlphttp appends the path itself
