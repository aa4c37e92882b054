"""`spendstream up` beside one already running: one line saying what runs where, a non-zero exit."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from spendstream.cli.__main__ import main
from tests.support import Isolation, free_port

pytestmark = [pytest.mark.integration]


@pytest.fixture
def running_up(iso: Isolation, tmp_path: Path) -> Iterator[dict[str, str]]:
    """A `spendstream up` on a free port; yields its environment."""
    env = {**os.environ, **iso.env(), "SPENDSTREAM_HTTP_PORT": str(free_port())}
    env.pop("SPENDSTREAM_CLICKHOUSE_URL", None)  # the embedded default: chDB under the data directory
    with (tmp_path / "first.log").open("wb") as log:
        first = subprocess.Popen(
            [sys.executable, "-m", "spendstream.cli", "up"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert first.poll() is None, (tmp_path / "first.log").read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{env['SPENDSTREAM_HTTP_PORT']}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the first `up` did not become ready"
            time.sleep(0.2)
        yield env
    finally:
        first.terminate()
        first.wait(timeout=60)


def _second(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spendstream.cli", "up"], env=env, capture_output=True, text=True, timeout=120
    )


def test_a_second_up_on_the_same_port_and_data_directory_says_so_in_one_line(
    running_up: dict[str, str], tmp_path: Path
) -> None:
    port = running_up["SPENDSTREAM_HTTP_PORT"]
    second = _second(running_up)
    assert second.returncode != 0
    assert len(second.stderr.strip().splitlines()) == 1, second.stderr
    assert f"127.0.0.1:{port}" in second.stderr and "already running" in second.stderr

    # Another data directory, the same port: the port is what is taken.
    elsewhere = _second({**running_up, "SPENDSTREAM_DATA_DIR": str(tmp_path / "other")})
    assert elsewhere.returncode != 0 and len(elsewhere.stderr.strip().splitlines()) == 1, elsewhere.stderr
    assert f"127.0.0.1:{port}" in elsewhere.stderr

    # Another port, the same data directory: its embedded ClickHouse is what is taken.
    shared = _second({**running_up, "SPENDSTREAM_HTTP_PORT": str(free_port())})
    assert shared.returncode != 0 and len(shared.stderr.strip().splitlines()) == 1, shared.stderr
    assert running_up["SPENDSTREAM_DATA_DIR"] in shared.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SPENDSTREAM_REDIS_URL", "notaurl"),
        ("SPENDSTREAM_CLICKHOUSE_URL", "http//clickhouse:8123"),
        ("SPENDSTREAM_LOG_LEVEL", "LOUD"),
    ],
)
@pytest.mark.parametrize("command", [["up", "--check"], ["run", "rollup", "--check"]])
def test_check_refuses_a_bad_setting_naming_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    variable: str,
    value: str,
    command: list[str],
) -> None:
    monkeypatch.setenv("SPENDSTREAM_DATA_DIR", str(tmp_path))
    monkeypatch.setenv(variable, value)
    assert main(command) != 0
    captured = capsys.readouterr()
    assert f"{variable}:" in captured.err and "configuration is valid" not in captured.out
