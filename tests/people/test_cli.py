"""`spendstream member add`: the operator's bootstrap of a workspace's first owner, as the shell sees it."""

from __future__ import annotations

import asyncio
import json

import pytest

from spendstream.cli.__main__ import main
from tests.people.world import people_service, session_from
from tests.support import Isolation, create_workspace

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_member_add_prints_a_one_time_link_that_signs_the_owner_in(
    iso: Isolation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = (await create_workspace(iso))["workspace_id"]
    for name, value in iso.env(HTTP_PORT="8080", SMTP_HOST="").items():
        monkeypatch.setenv(name, value)
    async with people_service(iso) as p:
        # The command runs its own event loop: here, in a worker thread beside the test's.
        code = await asyncio.to_thread(main, ["member", "add", ws, "Boss@Example.com", "--role", "owner"])
        assert code == 0
        printed = json.loads(capsys.readouterr().out)
        assert printed["role"] == "owner" and printed["workspace_id"] == ws
        link = printed["signin_link"]
        assert link.startswith("http://localhost:8080/v1/auth/link?token=")
        followed = await p.client.get(link.removeprefix("http://localhost:8080"))
        assert followed.status_code == 302
        owner = await p.session(session_from(followed))
        assert owner.member_id == printed["member_id"]
        assert [m["email"] for m in (await p.members(owner)).values()] == ["boss@example.com"]

        bad = await asyncio.to_thread(main, ["member", "add", ws, "not-an-address", "--role", "owner"])
        assert bad == 2
        assert "not-an-address" not in capsys.readouterr().err
