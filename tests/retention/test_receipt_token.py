"""A workspace erasure's receipt token: shown once in the answer to the request, kept only as its SHA-256, and the
one credential of `GET /v1/deletions/{id}/receipt`, which still answers once the workspace's keys are gone."""

from __future__ import annotations

import hashlib
import io
import re
from typing import Any

import pytest

from spendstream.common.erasure import DeletionRequest
from spendstream.common.topics import DELETION_REQUESTS
from tests.retention.conftest import product
from tests.retention.pipeline import replay
from tests.support import Isolation, auth, create_workspace, eventually

pytestmark = [pytest.mark.integration]

TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # secrets.token_urlsafe(32): 32 random bytes, url-safe base64


def receipt_token(token: str) -> dict[str, str]:
    return {"X-Receipt-Token": token}


async def test_the_token_is_in_the_first_answer_only_and_opens_that_request_alone(iso: Isolation) -> None:
    mine, theirs = await create_workspace(iso, "mine"), await create_workspace(iso, "theirs")
    # No owners run: requests stay `executing`, which is all these checks need.
    async with product(iso, owners=False) as p:
        c = p.client
        customer = await c.post("/v1/deletions", json={"customer_id": "cust-1"}, headers=auth(mine["admin"]))
        assert customer.status_code == 202 and "receipt_token" not in customer.json()

        first = await c.post("/v1/deletions", json={"request_id": "w-1"}, headers=auth(mine["admin"]))
        assert first.status_code == 202, first.text
        token = first.json()["receipt_token"]
        assert TOKEN.match(token)
        again = await c.post("/v1/deletions", json={"request_id": "w-1"}, headers=auth(mine["admin"]))
        assert again.status_code == 200 and "receipt_token" not in again.json() and token not in again.text
        # Another workspace's request of the same id has a token of its own; each token opens its own request.
        theirs_first = await c.post("/v1/deletions", json={"request_id": "w-1"}, headers=auth(theirs["admin"]))
        assert theirs_first.status_code == 202, theirs_first.text
        theirs_token = theirs_first.json()["receipt_token"]
        assert theirs_token != token

        async def executing() -> DeletionRequest | None:
            request = p.retention.coordinator.get(mine["workspace_id"], "w-1")
            return request if request is not None and request.state == "executing" else None

        await eventually(executing)
        by_token = await c.get("/v1/deletions/w-1/receipt", headers=receipt_token(token))
        assert by_token.status_code == 200, by_token.text
        assert by_token.json() == (await c.get("/v1/deletions/w-1", headers=auth(mine["admin"]))).json()
        assert by_token.json()["workspace_id"] == mine["workspace_id"] and token not in by_token.text
        theirs_view = await c.get("/v1/deletions/w-1/receipt", headers=receipt_token(theirs_token))
        assert theirs_view.status_code == 200 and theirs_view.json()["workspace_id"] == theirs["workspace_id"]

        # Missing: 401 naming the header. Wrong token, another request's token, an unknown request: one answer.
        missing = await c.get("/v1/deletions/w-1/receipt")
        assert missing.status_code == 401 and missing.json()["error"] == "receipt_token_required"
        assert "X-Receipt-Token" in missing.json()["message"]
        # Never a query parameter, nor the workspace's own key.
        assert (await c.get("/v1/deletions/w-1/receipt", params={"token": token})).status_code == 401
        assert (await c.get("/v1/deletions/w-1/receipt", headers=auth(mine["admin"]))).status_code == 401
        refused = [
            await c.get(
                "/v1/deletions/w-1/receipt", headers=receipt_token(token[:-1] + ("A" if token[-1] != "A" else "B"))
            ),
            await c.get(f"/v1/deletions/{customer.json()['request_id']}/receipt", headers=receipt_token(token)),
            await c.get("/v1/deletions/no-such-request/receipt", headers=receipt_token(token)),
            await c.get("/v1/deletions/no-such-request/receipt", headers=receipt_token("x" * 43)),
        ]
        assert [r.status_code for r in refused] == [401] * 4
        assert {r.text for r in refused} == {refused[0].text}
        assert refused[0].json()["error"] == "invalid_receipt_token"

    # On the requests topic: the token's SHA-256 in the workspace request's record, never the token.
    records = await replay(iso, DELETION_REQUESTS)
    blob = b"".join(value or b"" for _, value in records)
    assert hashlib.sha256(token.encode()).hexdigest().encode() in blob
    assert token.encode() not in blob and theirs_token.encode() not in blob


async def test_guessing_receipt_tokens_is_braked_per_client_address(iso: Isolation) -> None:
    ws = await create_workspace(iso)
    async with product(iso, owners=False, auth_failures_per_address=3) as p:
        asked = await p.client.post("/v1/deletions", json={}, headers=auth(ws["admin"]))
        assert asked.status_code == 202, asked.text
        request_id, token = asked.json()["request_id"], asked.json()["receipt_token"]
        answers = [
            await p.client.get(f"/v1/deletions/{request_id}/receipt", headers=receipt_token(f"guess-{i:038d}"))
            for i in range(4)
        ]
        assert [a.status_code for a in answers] == [401] * 3 + [429]
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
        # The address waits before anything is looked at: the right token too, until the block ends.
        blocked = await p.client.get(f"/v1/deletions/{request_id}/receipt", headers=receipt_token(token))
        assert blocked.status_code == 429 and token not in blocked.text


async def test_after_the_workspace_is_erased_its_token_still_reads_the_receipt_and_no_log_holds_it(
    iso: Isolation, captured_logs: io.StringIO
) -> None:
    gone = await create_workspace(iso, "gone")
    async with product(iso) as p:
        asked = await p.client.post("/v1/deletions", json={"request_id": "erase-all"}, headers=auth(gone["admin"]))
        assert asked.status_code == 202, asked.text
        token = asked.json()["receipt_token"]
        done = await p.settled(gone["workspace_id"], "erase-all", timeout=120)
        assert done.state == "verified", done.reason
        # The key that asked went with the workspace...
        assert (await p.client.get("/v1/deletions/erase-all", headers=auth(gone["admin"]))).status_code == 401
        # ...the token did not.
        shown = await p.client.get("/v1/deletions/erase-all/receipt", headers=receipt_token(token))
        assert shown.status_code == 200, shown.text
        body: dict[str, Any] = shown.json()
        assert body["state"] == "verified" and body["subject"] == "workspace"
        assert body["workspace_id"] == gone["workspace_id"] and done.receipt is not None
        assert body["receipt"]["request_id"] == "erase-all"
        assert sorted(body["reported"]) == sorted(done.receipt.owner_names())
    logged = captured_logs.getvalue()
    assert "erase-all" in logged  # the saga's lines were captured: the check below can fail
    assert token not in logged
