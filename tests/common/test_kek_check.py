"""A KEK that is not the one that wrapped the workspaces' data keys (another SPENDSTREAM_KEK, or data_dir/kek of
another checkout): refused before anything starts, naming the KEK's id and each workspace, writing nothing; a key
that fails after start raises KeyUnavailable for that workspace only. Against the real broker."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from spendstream.cli.__main__ import main as cli_main
from spendstream.common import crypto
from spendstream.common.kek_check import kek_problems
from spendstream.common.settings import BaseServiceSettings, fingerprint_id
from spendstream.common.tenants import KeyRing, KeyUnavailable
from spendstream.common.topics import DATA_KEYS, topic_name
from spendstream.rollup.__main__ import main as rollup_main
from tests.support import Isolation

pytestmark = [pytest.mark.integration]


def _other_kek() -> str:
    return base64.b64encode(os.urandom(32)).decode()


async def _write_key_sets(iso: Isolation, *key_sets: crypto.WrappedKeySet) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=iso.stack.kafka)
    await producer.start()
    try:
        for key_set in key_sets:
            await producer.send_and_wait(
                topic_name(DATA_KEYS, iso.prefix),
                key_set.model_dump_json().encode(),
                key=key_set.workspace_id.encode(),
            )
    finally:
        await producer.stop()


async def _workspaces(iso: Isolation, kek: str, kek_id: str | None = None) -> None:
    """ws_a and ws_b, wrapped by `kek` (under `kek_id`, else its derived id)."""
    raw = base64.b64decode(kek)
    wrapped_as = kek_id or fingerprint_id(raw)
    await _write_key_sets(iso, *(crypto.new_key_set(ws, raw, wrapped_as) for ws in ("ws_a", "ws_b")))


async def test_the_kek_that_wrapped_the_keys_passes_and_another_is_named_with_each_workspace(iso: Isolation) -> None:
    await _workspaces(iso, iso.kek)
    assert await kek_problems(iso.settings(BaseServiceSettings)) == []

    other = _other_kek()
    problems = await kek_problems(iso.settings(BaseServiceSettings, kek=other))
    other_id, wrapped_by = fingerprint_id(base64.b64decode(other)), fingerprint_id(base64.b64decode(iso.kek))
    assert problems == [
        f"KEK {other_id} (SPENDSTREAM_KEK) cannot unwrap the data key of workspace {ws} (wrapped by KEK {wrapped_by})"
        for ws in ("ws_a", "ws_b")
    ]


async def test_key_sets_wrapped_under_local_1_stay_readable_by_the_kek_that_wrote_them(iso: Isolation) -> None:
    await _workspaces(iso, iso.kek, kek_id="local-1")
    assert await kek_problems(iso.settings(BaseServiceSettings)) == []
    assert await kek_problems(iso.settings(BaseServiceSettings, kek_id="local-1")) == []
    # Another KEK that also calls itself local-1 is still found out: the unwrap fails.
    problems = await kek_problems(iso.settings(BaseServiceSettings, kek=_other_kek(), kek_id="local-1"))
    assert len(problems) == 2 and all("KEK local-1" in p and "wrapped by KEK local-1" in p for p in problems)


async def test_without_a_kek_while_key_sets_exist_nothing_is_created_and_it_is_refused(
    iso: Isolation, tmp_path: Path
) -> None:
    await _workspaces(iso, iso.kek)
    empty = tmp_path / "elsewhere"
    problems = await kek_problems(iso.settings(BaseServiceSettings, kek="", data_dir=empty))
    assert len(problems) == 1 and f"no KEK at {empty / 'kek'}" in problems[0]
    assert fingerprint_id(base64.b64decode(iso.kek)) in problems[0]
    assert not empty.exists()


async def test_a_key_that_fails_after_start_raises_key_unavailable_for_its_workspace_only(iso: Isolation) -> None:
    other = _other_kek()
    await _workspaces(iso, iso.kek)
    ring = KeyRing(iso.settings(BaseServiceSettings))
    await ring.table.start()
    try:
        assert await ring.data_key("ws_a", 1) is not None
        # A key set written later by a process with another KEK.
        raw = base64.b64decode(other)
        await _write_key_sets(iso, crypto.new_key_set("ws_c", raw, fingerprint_id(raw)))
        with pytest.raises(KeyUnavailable) as raised:
            await ring.data_key("ws_c", 1)
        assert raised.value.workspace_id == "ws_c" and raised.value.wrapped_by == fingerprint_id(raw)
        assert await ring.data_key("ws_b", 1) is not None
    finally:
        await ring.table.stop()


@pytest.fixture
def wrong_kek_env(iso: Isolation, monkeypatch: pytest.MonkeyPatch) -> str:
    """The isolation's environment with a KEK other than the one that wrapped its key sets; returns its id."""
    other = _other_kek()
    for name, value in iso.env(KEK=other).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SPENDSTREAM_KEK_ID", raising=False)
    return fingerprint_id(base64.b64decode(other))


async def test_up_check_refuses_a_wrong_kek_one_line_per_workspace_without_a_traceback(
    iso: Isolation, wrong_kek_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await _workspaces(iso, iso.kek)
    capsys.readouterr()
    checks: list[Callable[[], int]] = [lambda: cli_main(["up", "--check"]), lambda: rollup_main(["--check"])]
    for check in checks:
        assert await _in_thread(check) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and "Traceback" not in "".join(err)
        for line, ws in zip(err, ("ws_a", "ws_b"), strict=True):
            assert f"KEK {wrong_kek_env}" in line and f"workspace {ws}" in line
    assert not (iso.data_dir / "kek").exists()


async def _in_thread(check: Callable[[], int]) -> int:
    """The checks run their own event loop (asyncio.run), as they do from the command line."""
    return await asyncio.to_thread(check)


async def test_admin_commands_with_another_kek_or_none_write_nothing(
    iso: Isolation, wrong_kek_env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rotation wrapped by another KEK would leave the workspace a current key the server cannot unwrap; a
    workspace created with a KEK generated on the spot, one nobody else has."""
    await _workspaces(iso, iso.kek)
    capsys.readouterr()
    assert await _in_thread(lambda: cli_main(["tenant", "rotate-data-key", "ws_a"])) == 2
    assert f"KEK {wrong_kek_env}" in capsys.readouterr().err
    ring = KeyRing(iso.settings(BaseServiceSettings))
    await ring.table.start()
    try:
        assert ring.current_version("ws_a") == 1
    finally:
        await ring.table.stop()

    monkeypatch.delenv("SPENDSTREAM_KEK")
    assert await _in_thread(lambda: cli_main(["workspace", "create", "elsewhere"])) == 2
    assert "no KEK at" in capsys.readouterr().err
    assert not (iso.data_dir / "kek").exists()
