"""What a signed-in owner does in the console, checked against the API afterwards: a budget created, edited and
deleted (its markup-laden name shown as text), a key issued once and revoked, a customer's erasure requested,
followed and its receipt downloaded, the data exported as CSV, and an invitation accepted on its page."""

from __future__ import annotations

import csv
import io
import json

import httpx
import pytest
from playwright.async_api import expect

from tests.console.browsing import open_page, ready, sign_in
from tests.console.conftest import Watched
from tests.console.world import PASSWORD, World
from tests.support import eventually

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]

MARKUP_NAME = '<b>Team "budget"</b><script>alert(1)</script>'


async def budgets_of(world: World) -> list[dict[str, object]]:
    async with world.client() as client:
        response = await client.get("/v1/budgets", headers={"Authorization": f"Bearer {world.keys['admin']}"})
    assert response.status_code == 200, response.text
    found: list[dict[str, object]] = response.json()
    return found


async def test_a_budget_is_created_edited_and_deleted_and_its_name_stays_text(world: World, watched: Watched) -> None:
    page = watched.page
    await sign_in(page, world)
    await open_page(page, "budgets")
    form = page.get_by_role("form", name="New budget")
    await form.get_by_label("Name").fill(MARKUP_NAME)
    await form.get_by_label("Amount (USD per month)").fill("250")
    await form.get_by_label("Thresholds (% of amount)").fill("50, 90")
    await form.get_by_role("button", name="Create budget").click()
    listing = page.get_by_role("table", name="Budgets")
    await expect(listing.get_by_role("cell", name=MARKUP_NAME, exact=True)).to_be_visible()
    assert await page.locator("main table b, main table script").count() == 0
    (made,) = [b for b in await budgets_of(world) if b["name"] == MARKUP_NAME]
    assert (made["amount_usd"], made["thresholds"]) == ("250", [50, 90]) or float(str(made["amount_usd"])) == 250

    await page.get_by_role("button", name=f"Edit {MARKUP_NAME}").click()
    edit = page.get_by_role("form", name="Edit budget")
    await edit.get_by_label("Amount (USD per month)").fill("400")
    await edit.get_by_label("Name").fill("Platform team")
    await edit.get_by_role("button", name="Save").click()
    await expect(listing.get_by_role("cell", name="Platform team", exact=True)).to_be_visible()
    (changed,) = [b for b in await budgets_of(world) if b["budget_id"] == made["budget_id"]]
    assert (changed["name"], float(str(changed["amount_usd"]))) == ("Platform team", 400.0)

    await open_page(page, "overview")
    card = page.locator(f"[data-budget='{made['budget_id']}']")
    await expect(card).to_contain_text("of $400.00")

    await open_page(page, "budgets")
    delete = page.get_by_role("button", name="Delete Platform team")
    await delete.click()
    await delete.click()  # the second click confirms
    await expect(listing.get_by_role("cell", name="Platform team", exact=True)).to_have_count(0)
    assert [b for b in await budgets_of(world) if b["budget_id"] == made["budget_id"]] == []


async def test_a_key_is_shown_once_and_revoked(world: World, watched: Watched) -> None:
    page = watched.page
    await sign_in(page, world)
    await open_page(page, "members")
    issue = page.get_by_role("form", name="Issue a key")
    await issue.get_by_label("Scope").select_option("read")
    async with page.expect_response(lambda r: r.url.endswith("/v1/admin/keys") and r.request.method == "POST") as made:
        await issue.get_by_role("button", name="Issue key").click()
    key_id = (await (await made.value).json())["key_id"]
    secret = (await page.locator("[data-secret='key']").inner_text()).strip()
    assert secret.startswith("ssk_read_")
    async with world.client() as client:
        assert (await client.get("/v1/findings", headers={"Authorization": f"Bearer {secret}"})).status_code == 200

    revoke = page.get_by_role("button", name=f"Revoke {key_id}")
    await revoke.click()
    await revoke.click()
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=key_id, exact=True))
    await expect(row).to_contain_text("revoked")

    async def refused() -> bool:
        async with world.client() as client:
            answer = await client.get("/v1/findings", headers={"Authorization": f"Bearer {secret}"})
        return answer.status_code == 401

    await eventually(refused, timeout=30, interval=0.5)
    await page.reload()
    await ready(page)
    await expect(page.locator("[data-secret='key']")).to_have_count(0)  # shown once: gone on reload


async def test_a_customer_erasure_is_followed_to_its_receipt(world: World, watched: Watched) -> None:
    page = watched.page
    await sign_in(page, world)
    await open_page(page, "privacy")
    form = page.get_by_role("form", name="Erase a customer")
    await form.get_by_label("Customer id").fill("cust-erase-me")
    async with page.expect_response(lambda r: r.url.endswith("/v1/deletions") and r.request.method == "POST") as made:
        await form.get_by_role("button", name="Erase this customer").click()
    request_id = (await (await made.value).json())["request_id"]
    row = page.get_by_role("row").filter(has=page.get_by_role("cell", name=request_id, exact=True))
    await expect(row.locator("[data-state='verified']")).to_be_visible(timeout=120_000)
    async with page.expect_download() as download:
        await row.get_by_role("button", name="Download receipt").click()
    receipt = json.loads((await (await download.value).path()).read_text())
    async with world.client() as client:
        status = await client.get(
            f"/v1/deletions/{request_id}", headers={"Authorization": f"Bearer {world.keys['admin']}"}
        )
    assert receipt == status.json()["receipt"]
    assert "cust-erase-me" not in json.dumps(receipt)


async def test_the_export_downloads_the_workspaces_csv(world: World, watched: Watched) -> None:
    page = watched.page
    await sign_in(page, world)
    await open_page(page, "explore")
    async with page.expect_download() as download:
        await page.get_by_role("button", name="Export CSV").click()
    saved = await download.value
    assert saved.suggested_filename.endswith(".csv") and world.workspace_id in saved.suggested_filename
    text = (await saved.path()).read_text()
    async with httpx.AsyncClient(base_url=world.url, timeout=60) as client:
        direct = await client.get(
            "/v1/export", params={"format": "csv"}, headers={"Authorization": f"Bearer {world.keys['read']}"}
        )
    assert len(list(csv.reader(io.StringIO(text)))) == len(list(csv.reader(io.StringIO(direct.text))))
    assert "gpt-4o-mini" in text


async def test_an_invited_person_joins_on_the_invitation_page(world: World, watched: Watched) -> None:
    token = await world.invite("analyst@example.com", "member")
    page = watched.page
    await page.goto(f"{world.url}/invite#token={token}")
    form = page.get_by_role("form", name="Accept the invitation")
    await form.get_by_label("Your name").fill("Ana Lyst")
    await form.get_by_label("Choose a password (12 characters or more)").fill(PASSWORD)
    await form.get_by_role("button", name="Join").click()
    await ready(page)
    await expect(page.locator("main h1")).to_have_text("Overview")
    await expect(page.locator("#who")).to_contain_text("member")


async def test_a_member_changes_their_password_and_signs_in_with_the_new_one(world: World, watched: Watched) -> None:
    await world.join("rotating@example.com", "member")
    page = watched.page
    await sign_in(page, world, email="rotating@example.com")
    await page.locator("#who").get_by_role("link", name="rotating").click()
    await ready(page)
    form = page.get_by_role("form", name="Change your password")
    await form.get_by_label("Current password").fill(PASSWORD)
    await form.get_by_label("New password (12 characters or more)").fill("copper-kettle-91-whistling")
    async with page.expect_response(lambda r: r.url.endswith("/v1/me/password")) as changed:
        await form.get_by_role("button", name="Change password").click()
    assert (await changed.value).status == 200
    await expect(page.get_by_role("status").filter(has_text="Password changed")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("form", name="Sign in with e-mail and password")).to_be_visible()
    await sign_in(page, world, email="rotating@example.com", password="copper-kettle-91-whistling")
    await expect(page.locator("main h1")).to_have_text("Overview")
