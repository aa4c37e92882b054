"""`spendstream prices refresh`: validates before it replaces, and writes atomically."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

import pytest

from spendstream.cli.__main__ import main
from tests.support import free_port


def test_prices_refresh_installs_a_valid_table_where_rollup_reads_it_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "new.json"
    with resources.as_file(
        resources.files("spendstream.common").joinpath("data", "litellm_model_prices.json")
    ) as shipped:
        shutil.copyfile(shipped, source)
    monkeypatch.setenv("SPENDSTREAM_DATA_DIR", str(tmp_path / "data"))
    assert main(["prices", "refresh", "--from", str(source)]) == 0
    installed = tmp_path / "data" / "prices" / "litellm_model_prices.json"
    assert installed.read_bytes() == source.read_bytes()
    assert [p.name for p in installed.parent.iterdir()] == ["litellm_model_prices.json"]  # no temp file left


def test_prices_refresh_refuses_a_truncated_table_and_keeps_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "prices.json"
    target.write_text("old")
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"m": {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6}}))
    assert main(["prices", "refresh", "--from", str(small), "--to", str(target)]) == 2
    garbage = tmp_path / "garbage.json"
    garbage.write_text("<html>not json</html>")
    assert main(["prices", "refresh", "--from", str(garbage), "--to", str(target)]) == 2
    assert target.read_text() == "old"


def test_export_that_cannot_reach_the_server_fails_and_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "export.csv"
    assert (
        main(
            [
                "export",
                "--format",
                "csv",
                "-o",
                str(out),
                "--key",
                "k",
                "--quiet",
                "--url",
                f"http://127.0.0.1:{free_port()}",
            ]
        )
        == 2
    )
    assert list(tmp_path.iterdir()) == []
