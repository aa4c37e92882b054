"""`spendstream deletion …`: a request written to the topic is carried out by the running service."""

from __future__ import annotations

import asyncio
import json

import pytest

from spendstream.cli.__main__ import main
from spendstream.common.erasure import DeletionRequest
from spendstream.retention.receipts import subject_hash
from tests.retention.conftest import product
from tests.support import Isolation, create_workspace, eventually

pytestmark = [pytest.mark.integration]


async def test_cli_request_is_picked_up_and_its_status_shows_the_hash_not_the_customer(
    iso: Isolation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in iso.env().items():
        monkeypatch.setenv(name, value)
    ws = await create_workspace(iso)
    async with product(iso, owners=False) as p:
        code = await asyncio.to_thread(
            main,
            [
                "deletion",
                "request",
                "--workspace",
                ws["workspace_id"],
                "--customer-id",
                "cust-5",
                "--request-id",
                "cli-1",
            ],
        )
        assert code == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["request_id"] == "cli-1" and printed["subject"] == "customer"

        async def executing() -> DeletionRequest | None:
            request = p.retention.coordinator.get(ws["workspace_id"], "cli-1")
            return request if request is not None and request.state == "executing" else None

        request = await eventually(executing)
        assert request.origin == "cli" and request.requested_by == "cli"

        assert await asyncio.to_thread(main, ["deletion", "status", "cli-1"]) == 0
        status = capsys.readouterr().out
        assert "cust-5" not in status
        assert json.loads(status)["customer_hash"] == subject_hash(
            p.retention.settings.kek_bytes(), ws["workspace_id"], "cust-5"
        )
        assert await asyncio.to_thread(main, ["deletion", "status", "missing"]) == 1


async def test_status_of_an_id_two_workspaces_use_asks_for_the_workspace(
    iso: Isolation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in iso.env().items():
        monkeypatch.setenv(name, value)
    first, second = await create_workspace(iso, "first"), await create_workspace(iso, "second")
    async with product(iso, owners=False):
        for ws in (first, second):
            argv = ["deletion", "request", "--workspace", ws["workspace_id"], "--request-id", "same-1"]
            assert await asyncio.to_thread(main, argv) == 0
            assert json.loads(capsys.readouterr().out)["workspace_id"] == ws["workspace_id"]

        assert await asyncio.to_thread(main, ["deletion", "status", "same-1"]) == 1
        ambiguous = json.loads(capsys.readouterr().out)
        assert ambiguous["error"] == "ambiguous"
        assert ambiguous["workspaces"] == sorted([first["workspace_id"], second["workspace_id"]])
        for ws in (first, second):
            argv = ["deletion", "status", "same-1", "--workspace", ws["workspace_id"]]
            assert await asyncio.to_thread(main, argv) == 0
            assert json.loads(capsys.readouterr().out)["workspace_id"] == ws["workspace_id"]
