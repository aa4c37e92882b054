"""ingest's `spendstream` subcommands: keys list/issue/revoke and tenant show/cancel/reactivate/rotate-data-key,
against the real control-plane topics (rotate-data-key shares Admin.rotate_data_key with the tested admin API)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from spendstream.cli.__main__ import main
from spendstream.common.erasure import LifecycleEvent
from spendstream.common.topics import LIFECYCLE, topic_name
from tests.ingest.topics import read_all
from tests.support import Isolation, create_workspace

pytestmark = pytest.mark.integration


@pytest.fixture
def env(iso: Isolation, monkeypatch: pytest.MonkeyPatch) -> Isolation:
    for name, value in {
        "KAFKA_BOOTSTRAP_SERVERS": iso.stack.kafka,
        "REDIS_URL": iso.stack.redis,
        "TOPIC_PREFIX": iso.prefix,
        "REDIS_PREFIX": iso.prefix,
        "KEK": iso.kek,
        "DATA_DIR": str(iso.data_dir),
    }.items():
        monkeypatch.setenv(f"SPENDSTREAM_{name}", value)
    return iso


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_keys_and_tenant_commands_manage_a_workspace(env: Isolation, capsys: pytest.CaptureFixture[str]) -> None:
    ws = asyncio.run(create_workspace(env))["workspace_id"]
    issued = _run(capsys, "keys", "issue", ws, "--scope", "read")
    assert issued["scope"] == "read" and issued["key"].startswith("ssk_read_")
    listed = _run(capsys, "keys", "list", ws)
    assert issued["key_id"] in {k["key_id"] for k in listed} and len(listed) == 4
    assert issued["key"] not in json.dumps(listed)
    revoked = _run(capsys, "keys", "revoke", ws, issued["key_id"])
    assert revoked["revoked_at"] is not None

    assert main(["keys", "revoke", ws, "key_missing"]) == 1
    assert "no such key" in capsys.readouterr().err

    assert _run(capsys, "tenant", "cancel", ws)["status"] == "cancelled"
    shown = _run(capsys, "tenant", "reactivate", ws)
    assert (shown["status"], shown["data_key_version"]) == ("active", 1)
    kinds = [
        LifecycleEvent.model_validate_json(r.value).kind
        for r in asyncio.run(read_all(env.stack.kafka, topic_name(LIFECYCLE, env.prefix)))
    ]
    assert kinds == ["cancelled", "reactivated"]


def test_unknown_workspace_exits_non_zero_with_a_message(env: Isolation, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tenant", "show", "ws_missing"]) == 1
    assert "no such workspace" in capsys.readouterr().err


def test_rotate_data_key_twice_within_the_interval_says_when_to_retry(
    env: Isolation, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = asyncio.run(create_workspace(env))["workspace_id"]
    assert _run(capsys, "tenant", "rotate-data-key", ws) == {"workspace_id": ws, "current_version": 2}
    assert main(["tenant", "rotate-data-key", ws]) == 1
    err = capsys.readouterr().err
    assert "rotation_rate_limited" in err and "retry in" in err and "once every 3600 s" in err
    assert _run(capsys, "tenant", "show", ws)["data_key_version"] == 2
