"""The Data and privacy page and the sign-in page against a running spendstream: erasure requests made outside
the console (here through the API with an admin key) are listed and followed to their receipt, the retention
policy shows the installation's figures, a workspace erasure shows its receipt token once and the sign-in page
downloads the receipt with it after the workspace is gone, and single sign-on is offered only where it is
configured."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from playwright.async_api import expect

from tests.console.browsing import axe_violations, open_page, ready, sign_in
from tests.console.conftest import Watched
from tests.console.world import World
from tests.support import create_workspace, eventually

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def test_a_request_made_through_the_api_is_listed_and_followed_to_its_receipt(
    world: World, watched: Watched
) -> None:
    admin = {"Authorization": f"Bearer {world.keys['admin']}"}
    async with world.client() as client:
        # A customer the workspace never metered: the saga still runs every owner and receipts zero rows.
        made = await client.post("/v1/deletions", json={"customer_id": "cust-api-only"}, headers=admin)
        assert made.status_code == 202, made.text
    request_id = made.json()["request_id"]
    page = watched.page
    await sign_in(page, world)
    await open_page(page, "privacy")
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=request_id, exact=True))
    await expect(row).to_have_count(1)
    await expect(row.get_by_role("cell", name="customer", exact=False).first).to_be_visible()
    await expect(row.locator("[data-state='verified']")).to_be_visible(timeout=120_000)
    async with page.expect_download() as download:
        await row.get_by_role("button", name="Download receipt").click()
    receipt = json.loads((await (await download.value).path()).read_text())
    async with world.client() as client:
        status = await client.get(f"/v1/deletions/{request_id}", headers=admin)
        listed = await client.get("/v1/deletions", headers=admin)
    assert receipt == status.json()["receipt"] and receipt["status"] == "verified"
    assert "cust-api-only" not in json.dumps(receipt)
    # The page lists what the route lists, in its order (newest first).
    ids = [r["request_id"] for r in listed.json()["deletions"]]
    shown = (
        await page.get_by_role("table", name="Erasure requests of this workspace")
        .locator("tbody tr td:first-child")
        .all_inner_texts()
    )
    assert shown == ids
    assert await axe_violations(page) == []


async def test_the_retention_policy_shows_the_installations_figures(world: World, watched: Watched) -> None:
    async with world.client() as client:
        answer = await client.get("/v1/retention", headers={"Authorization": f"Bearer {world.keys['read']}"})
    assert answer.status_code == 200, answer.text
    policy = answer.json()
    page = watched.page
    await sign_in(page, world)
    await open_page(page, "privacy")
    await expect(page.locator("[data-figure='retention-months']")).to_have_text(
        f"{policy['usage_retention_months']} months"
    )
    await expect(page.locator("[data-figure='grace-days']")).to_have_text(f"{policy['cancellation_grace_days']} days")
    await expect(page.locator("[data-figure='erasure-owners']")).to_have_text(", ".join(policy["erasure_owners"]))
    assert policy["scheduled_erasure"] is None
    await expect(page.locator("[data-figure='scheduled-erasure']")).to_have_text("none: the workspace is not cancelled")
    assert await axe_violations(page) == []


async def test_without_single_sign_on_the_sign_in_page_offers_none(world: World, watched: Watched) -> None:
    async with world.client() as client:
        methods = await client.get("/v1/auth/methods")
    assert methods.status_code == 200 and methods.json() == {"password": True, "sso": False}
    page = watched.page
    async with page.expect_response(lambda r: r.url.endswith("/v1/auth/methods")) as asked:
        await page.goto(f"{world.url}/signin")
    assert (await asked.value).status == 200
    await expect(page.get_by_role("form", name="Sign in with e-mail and password")).to_be_visible()
    await expect(page.get_by_role("link", name="Sign in with SSO")).to_have_count(0)
    assert await axe_violations(page) == []


async def test_a_workspace_erasure_shows_its_receipt_token_once_and_the_sign_in_page_downloads_the_receipt(
    world: World, watched: Watched
) -> None:
    # A workspace of its own: the world's workspace serves the other tests.
    doomed = await create_workspace(world.iso, name="erased-in-the-console")
    key = {"Authorization": f"Bearer {doomed['admin']}"}
    async with world.client() as client:

        async def known() -> bool:  # every service of the monolith has replayed the new key
            answers = [await client.get(path, headers=key) for path in ("/v1/admin/workspace", "/v1/deletions")]
            return all(a.status_code == 200 for a in answers)

        await eventually(known, timeout=60)
    page = watched.page
    await page.goto(f"{world.url}/signin")
    await page.get_by_text("Use an API key instead").click()
    form = page.get_by_role("form", name="Sign in with an API key")
    await form.get_by_label("API key (kept in this tab only)").fill(doomed["admin"])
    await form.get_by_role("button", name="Use key").click()
    await ready(page)
    await open_page(page, "privacy")
    erase = page.get_by_role("form", name="Erase the workspace")
    await erase.get_by_label("Type “erase the workspace” to confirm").fill("erase the workspace")
    async with page.expect_response(lambda r: r.url.endswith("/v1/deletions") and r.request.method == "POST") as made:
        await erase.get_by_role("button", name="Erase the whole workspace").click()
    answer = await (await made.value).json()
    shown = page.locator("[data-secret='receipt-token']")
    await expect(shown).to_have_text(answer["receipt_token"])
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", answer["receipt_token"])
    card = page.locator(".card").filter(has=shown)
    await expect(card).to_contain_text("only way to download the receipt")
    await expect(card.locator("strong")).to_have_text(answer["request_id"])
    assert await axe_violations(page) == []
    token, request_id = answer["receipt_token"], answer["request_id"]

    async with world.client() as client:

        async def verified() -> httpx.Response | None:
            r = await client.get(f"/v1/deletions/{request_id}/receipt", headers={"X-Receipt-Token": token})
            assert r.status_code == 200, r.text
            return r if r.json()["state"] == "verified" else None

        by_token = await eventually(verified, timeout=120)
        assert (await client.get(f"/v1/deletions/{request_id}", headers=key)).status_code == 401

    # Signed out (the key went with the workspace): the sign-in page reads the receipt by the token alone.
    await page.goto(f"{world.url}/signin")
    await page.get_by_text("Download a workspace erasure receipt").click()
    download_form = page.get_by_role("form", name="Download a workspace erasure receipt")
    await download_form.get_by_label("Request id").fill(request_id)
    await download_form.get_by_label("Receipt token").fill("not-" + token[4:])
    await download_form.get_by_role("button", name="Download receipt").click()
    await expect(download_form.get_by_role("status")).to_have_text(
        "This token is not the receipt token of that request."
    )
    await download_form.get_by_label("Receipt token").fill(token)
    async with page.expect_download() as download:
        await download_form.get_by_role("button", name="Download receipt").click()
    saved = json.loads((await (await download.value).path()).read_text())
    assert saved == by_token.json() and saved["receipt"]["status"] == "verified"
    await expect(download_form.get_by_role("status")).to_have_text("Receipt saved: the request is verified.")
    assert await axe_violations(page) == []
    # The browser logs every 401 as an error: the erased key's (the shell asks who it is, then shows the sign-in
    # page) and the wrong token's. Those two were the point here; nothing else may have failed.
    expected = (f"{world.url}/v1/admin/workspace)", f"{world.url}/v1/deletions/{request_id}/receipt)")
    assert {e.endswith(expected) and "401" in e for e in watched.errors} == {True}, watched.errors
    assert any(e.endswith(expected[1]) for e in watched.errors)
    watched.errors.clear()
