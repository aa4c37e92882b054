"""`spendstream prices ...` (versions, holds, approval, tenant rates) against real pricing topics, and `export`."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from spendstream.cli.__main__ import main
from spendstream.common.price_replica import ReplayedPriceBook
from spendstream.common.pricebook import PriceBook
from spendstream.common.settings import BaseServiceSettings
from tests.support import Isolation, free_port


def shipped() -> dict[str, Any]:
    text = resources.files("spendstream.common").joinpath("data", "litellm_model_prices.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


async def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = await asyncio.to_thread(main, list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out) if out.strip() else None


async def replayed(iso: Isolation) -> ReplayedPriceBook:
    pricing = ReplayedPriceBook(iso.settings(BaseServiceSettings))
    await pricing.start()
    return pricing


async def test_prices_refresh_adds_dated_versions_and_never_replaces_one(
    iso: Isolation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in iso.env().items():
        monkeypatch.setenv(name, value)
    march = shipped()
    march["gpt-4o"]["input_cost_per_token"] = 5e-06
    code, out = await cli(
        capsys, "prices", "refresh", "--file", str(write(tmp_path / "a.json", march)), "--from", "2026-03-10"
    )
    assert code == 0 and out["added"]["status"] == "active" and out["added"]["source"] == "file:a.json"
    first = out["added"]["version_id"]
    april = shipped()
    april["gpt-4o"]["input_cost_per_token"] = 7.5e-06
    code, out = await cli(
        capsys, "prices", "refresh", "--file", str(write(tmp_path / "b.json", april)), "--from", "2026-04-01"
    )
    assert code == 0 and out["added"]["effective_from"] == "2026-04-01"
    # The same table again adds nothing.
    code, out = await cli(capsys, "prices", "refresh", "--file", str(tmp_path / "b.json"), "--from", "2026-04-01")
    assert code == 0 and out["added"] is None

    pricing = await replayed(iso)
    try:
        book = pricing.book
        assert [v.version_id for v in book.versions()] == [first, out_id(book, "2026-04-01")]
        for day, expected in (("2026-03-09", "0.0000025"), ("2026-03-10", "0.000005"), ("2026-04-01", "0.0000075")):
            _, in_force = book.table_at(date.fromisoformat(day))
            price = in_force.lookup("openai", "gpt-4o")
            assert price is not None and price.input == Decimal(expected), day
    finally:
        await pricing.stop()


def out_id(book: PriceBook, day: str) -> str:
    return next(v.version_id for v in book.versions() if v.effective_from.isoformat() == day)


async def test_a_refresh_that_zeroes_a_price_is_held_until_approved(
    iso: Isolation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in iso.env().items():
        monkeypatch.setenv(name, value)
    zeroed = shipped()
    zeroed["gpt-4o"]["output_cost_per_token"] = 0
    path = write(tmp_path / "zero.json", zeroed)
    code, out = await cli(capsys, "prices", "refresh", "--file", str(path), "--from", "2026-03-10")
    assert code == 0 and out["added"]["status"] == "held"
    assert {"kind": "zero", "key": "gpt-4o", "field": "output_cost_per_token", "old": "0.00001", "new": "0"} in [
        {k: r[k] for k in ("kind", "key", "field", "old", "new")} for r in out["added"]["hold_reasons"]
    ]
    held_id = out["added"]["version_id"]
    code, held = await cli(capsys, "prices", "held")
    assert code == 0 and [v["version_id"] for v in held] == [held_id]
    assert await asyncio.to_thread(main, ["prices", "approve", "no-such-version"]) == 2
    capsys.readouterr()
    code, out = await cli(capsys, "prices", "approve", held_id)
    assert code == 0 and out["approved"]["status"] == "active" and out["approved"]["approved_by"] == "cli"
    code, held = await cli(capsys, "prices", "held")
    assert held == []
    pricing = await replayed(iso)
    try:
        _, in_force = pricing.book.table_at(date(2026, 3, 10))
        price = in_force.lookup("openai", "gpt-4o")
        assert price is not None and price.output == 0
    finally:
        await pricing.stop()


async def test_prices_refresh_refuses_what_is_not_a_price_table(
    iso: Isolation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in iso.env().items():
        monkeypatch.setenv(name, value)
    small = write(tmp_path / "small.json", {"m": {"input_cost_per_token": 1e-6, "output_cost_per_token": 1e-6}})
    assert await asyncio.to_thread(main, ["prices", "refresh", "--file", str(small)]) == 2
    garbage = tmp_path / "garbage.json"
    garbage.write_text("<html>not json</html>")
    assert await asyncio.to_thread(main, ["prices", "refresh", "--file", str(garbage)]) == 2
    assert "not JSON" in capsys.readouterr().err
    code, out = await cli(capsys, "prices", "versions")
    assert code == 0 and out["versions"] == [] and out["in_force"] == "0"


async def test_prices_rates_set_list_delete(
    iso: Isolation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in iso.env().items():
        monkeypatch.setenv(name, value)
    code, out = await cli(
        capsys,
        "prices",
        "rates",
        "set",
        "ws-1",
        "enterprise",
        "--from",
        "2026-03-01",
        "--provider",
        "openai",
        "--model",
        "gpt-4o*",
        "--discount",
        "15",
    )
    assert code == 0 and out["set"]["kind"] == "discount" and out["set"]["percent"] == "15"
    code, out = await cli(
        capsys,
        "prices",
        "rates",
        "set",
        "ws-1",
        "private",
        "--from",
        "2026-03-01",
        "--model",
        "our-model",
        "--input",
        "0.000001",
        "--output",
        "0.000004",
    )
    assert code == 0 and out["set"]["kind"] == "fixed"
    assert (
        await asyncio.to_thread(
            main, ["prices", "rates", "set", "ws-1", "x", "--from", "2026-03-01", "--input", "0.000001"]
        )
        == 2
    )
    assert "needs input and output" in capsys.readouterr().err
    code, out = await cli(capsys, "prices", "rates", "list", "ws-1")
    assert [r["rate_id"] for r in out["rates"]] == ["enterprise", "private"]
    code, out = await cli(capsys, "prices", "rates", "delete", "ws-1", "enterprise")
    assert code == 0
    code, out = await cli(capsys, "prices", "rates", "list", "ws-1")
    assert [r["rate_id"] for r in out["rates"]] == ["private"]
    assert await asyncio.to_thread(main, ["prices", "rates", "delete", "ws-1", "enterprise"]) == 2


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
