"""`--check`, for each service's `python -m` entrypoint and for `spendstream up` / `spendstream run X`: the
configuration is validated, nothing is written (not even the KEK a first start generates), and a bad value
fails with the variable's name, never its value."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from spendstream.alerts.__main__ import main as alerts_main
from spendstream.cli.__main__ import main as cli_main
from spendstream.ingest.__main__ import main as ingest_main
from spendstream.retention.__main__ import main as retention_main
from spendstream.rollup.__main__ import main as rollup_main

Main = Callable[[Sequence[str] | None], int]
ENTRYPOINTS: dict[str, Main] = {
    "ingest": ingest_main,
    "rollup": rollup_main,
    "alerts": alerts_main,
    "retention": retention_main,
}
CHECKS: list[tuple[str, Callable[[], int]]] = [
    *((f"python -m spendstream.{name}", lambda m=m: m(["--check"])) for name, m in ENTRYPOINTS.items()),
    ("spendstream up", lambda: cli_main(["up", "--check"])),
    *((f"spendstream run {name}", lambda n=name: cli_main(["run", n, "--check"])) for name in ENTRYPOINTS),
]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("KEK", "KEK_ID", "HTTP_PORT"):
        monkeypatch.delenv(f"SPENDSTREAM_{name}", raising=False)
    # The check replays the data-keys topic: its own prefix, so other installs on the broker are not read.
    monkeypatch.setenv("SPENDSTREAM_TOPIC_PREFIX", f"check-{uuid.uuid4().hex[:8]}.")
    empty = tmp_path / "data"
    empty.mkdir()
    monkeypatch.setenv("SPENDSTREAM_DATA_DIR", str(empty))
    return empty


@pytest.mark.parametrize(("command", "check"), CHECKS, ids=[c for c, _ in CHECKS])
def test_check_on_an_empty_data_dir_exits_zero_and_writes_nothing(
    command: str, check: Callable[[], int], data_dir: Path
) -> None:
    assert check() == 0
    assert list(data_dir.iterdir()) == []


@pytest.mark.parametrize(("command", "check"), CHECKS, ids=[c for c, _ in CHECKS])
def test_check_names_the_bad_variable_and_exits_non_zero(
    command: str,
    check: Callable[[], int],
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SPENDSTREAM_HTTP_PORT", "70000-not-a-port")
    assert check() != 0
    err = capsys.readouterr().err
    assert "SPENDSTREAM_HTTP_PORT" in err and "70000-not-a-port" not in err
    assert list(data_dir.iterdir()) == []


@pytest.mark.parametrize(("command", "check"), CHECKS, ids=[c for c, _ in CHECKS])
def test_check_refuses_a_kek_of_the_wrong_size_without_printing_it(
    command: str,
    check: Callable[[], int],
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SPENDSTREAM_KEK", "c2hvcnQta2V5")  # base64 of 9 bytes
    assert check() != 0
    err = capsys.readouterr().err
    assert "SPENDSTREAM_KEK" in err and "c2hvcnQta2V5" not in err
