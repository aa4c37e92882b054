"""`spendstream budgets ...` against a running alerts service on a real port."""

from __future__ import annotations

import asyncio
import json

import pytest

from spendstream.alerts.app import create_service as create_alerts
from spendstream.cli.__main__ import main
from tests.alerts.conftest import alerts_settings
from tests.alerts.receivers import listening
from tests.support import Isolation, create_workspace

pytestmark = pytest.mark.integration


async def test_budgets_commands_create_update_list_and_delete(
    iso: Isolation, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = await create_workspace(iso)
    async with listening(create_alerts(alerts_settings(iso))) as url:
        common = ["--url", url, "--key", ws["admin"]]

        async def run(*argv: str) -> object:
            assert await asyncio.to_thread(main, ["budgets", *argv]) == 0
            return json.loads(capsys.readouterr().out)

        created = await run(
            "create",
            *common,
            "--name",
            "support bot",
            "--amount",
            "120",
            "--customer",
            "cust-9",
            "--threshold",
            "50",
            "--threshold",
            "100",
            "--webhook",
            "http://127.0.0.1:9/h",
            "--email",
            "ops@example.com",
        )
        assert isinstance(created, dict)
        assert created["scope"] == {"tag": "customer_id", "value": "cust-9"}
        assert created["thresholds"] == [50, 100] and created["webhooks"][0]["secret"]
        budget_id = created["budget_id"]
        changed = await run("update", budget_id, *common, "--amount", "240")
        assert isinstance(changed, dict) and changed["amount_usd"] == "240"
        listed = await run("list", *common)
        assert isinstance(listed, list) and [b["webhooks"][0]["secret"] for b in listed] == [None]
        assert await run("alerts", budget_id, *common) == {"budget_id": budget_id, "alerts": []}
        assert await run("delete", budget_id, *common) == {"deleted": True}
        assert await asyncio.to_thread(main, ["budgets", "show", budget_id, *common]) == 1


async def test_a_hard_budget_is_created_with_its_redis_policy_and_can_be_made_soft(
    iso: Isolation, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = await create_workspace(iso)
    async with listening(create_alerts(alerts_settings(iso))) as url:
        common = ["--url", url, "--key", ws["admin"]]

        async def run(*argv: str) -> dict[str, object]:
            assert await asyncio.to_thread(main, ["budgets", *argv]) == 0
            out = json.loads(capsys.readouterr().out)
            assert isinstance(out, dict)
            return out

        created = await run(
            "create", *common, "--name", "cap", "--amount", "50", "--hard", "--on-redis-unavailable", "allow"
        )
        assert (created["hard"], created["on_redis_unavailable"]) == (True, "allow")
        assert created["state"] is None  # shown by GET, from Redis
        shown = await run("show", str(created["budget_id"]), *common)
        assert shown["state"] == {
            "period": shown["state"]["period"],  # type: ignore[index]
            "committed_usd": "0.000000000",
            "reserved_usd": "0.000000000",
            "remaining_usd": "50.000000000",
        }
        soft = await run("update", str(created["budget_id"]), *common, "--soft")
        assert (soft["hard"], soft["state"]) == (False, None)
