"""Every page of the console in a real Chromium against a running spendstream: reachable in two clicks after
signing in with a password, free of console errors and of requests leaving 127.0.0.1, without a serious or
critical axe-core violation; the figures it shows are those of GET /v1/usage; data renders as text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import expect

from spendstream.console.pages import NAVIGATION
from tests.console.browsing import axe_violations, open_page, ready, shown_usd, sign_in
from tests.console.conftest import Watched
from tests.console.world import SHOTS, XSS_TAG, World

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


@pytest.mark.parametrize("name", list(NAVIGATION))
async def test_each_page_opens_in_two_clicks_and_passes_axe(world: World, watched: Watched, name: str) -> None:
    page = watched.page
    await sign_in(page, world)
    await page.get_by_role("link", name="spendstream").click()  # home
    await open_page(page, name)
    main = page.locator("main")
    await expect(main.get_by_role("heading", level=1)).to_have_text(NAVIGATION[name])
    await expect(main.get_by_role("alert").filter(has_text="could not load")).to_have_count(0)
    assert await axe_violations(page) == []
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


async def test_the_overview_shows_this_months_usage_figures(world: World, watched: Watched) -> None:
    page = watched.page
    await sign_in(page, world)
    today = datetime.now(UTC).date()
    month = {"from": str(today.replace(day=1)), "to": str(today)}
    # The page asks for the ten costliest of each ranking (top=10); the same call here.
    by_model = await world.usage(**month, group_by="model", top=10)
    await expect(page.locator("[data-figure='total-cost']")).to_have_text(shown_usd(by_model["totals"]["cost_usd"]))
    await expect(page.locator("[data-figure='total-requests']")).to_have_text(f"{by_model['totals']['requests']:,}")
    table = page.get_by_role("table", name="Top models")
    for row in by_model["rows"]:
        name = f"Other ({by_model['other_series']} series)" if row["other"] else row["model"]
        cells = table.get_by_role("row").filter(has=page.get_by_role("cell", name=name, exact=True))
        await expect(cells.get_by_role("cell").nth(2)).to_have_text(shown_usd(row["cost_usd"]))
    await expect(table.locator("tbody tr")).to_have_count(len(by_model["rows"]))
    by_feature = await world.usage(**month, group_by="feature", top=10)
    features = page.get_by_role("table", name="Top features")
    await expect(features.locator("tbody tr")).to_have_count(11)  # 17 features: ten and the rest
    rest = f"Other ({by_feature['other_series']} series)"
    assert by_feature["other_series"] == 7 and by_feature["rows"][-1]["other"]
    await expect(features.locator("tbody tr").last.locator("td")).to_have_text(
        [rest, f"{by_feature['rows'][-1]['requests']:,}", shown_usd(by_feature["rows"][-1]["cost_usd"])]
    )
    unpriced = page.get_by_role("table", name="Models the price table could not price")
    for unknown in by_model["unknown_models"]:
        await expect(unpriced.get_by_role("cell", name=unknown["model"], exact=True)).to_be_visible()


async def test_explore_equals_usage_with_the_same_top_for_the_same_range_and_draws_top_n_plus_other(
    world: World, watched: Watched
) -> None:
    page = watched.page
    await sign_in(page, world)
    await open_page(page, "explore")
    start = datetime.now(UTC).date() - timedelta(days=2)
    end = datetime.now(UTC).date()
    form = page.get_by_role("form", name="Usage query")
    await form.get_by_label("From (UTC)").fill(str(start))
    await form.get_by_label("To (UTC, inclusive)").fill(str(end))
    await form.get_by_label("day", exact=True).check()
    await form.get_by_label("feature", exact=True).check()
    await form.get_by_label("model", exact=True).uncheck()
    async with page.expect_response(lambda r: "/v1/usage" in r.url):
        await form.get_by_role("button", name="Show").click()
    # The page asks for the ten costliest series (its default), the rest summed server-side.
    expected = await world.usage(**{"from": str(start), "to": str(end)}, group_by="day,feature", top=10)
    assert expected["other_series"] == 7
    rest = "Other (7 series)"
    await expect(page.locator("[data-figure='total-cost']")).to_have_text(shown_usd(expected["totals"]["cost_usd"]))
    await expect(page.locator("[data-figure='total-requests']")).to_have_text(f"{expected['totals']['requests']:,}")
    rows = page.locator("main table tbody tr")
    await expect(rows).to_have_count(len(expected["rows"]))
    shown = {
        (cells[0], cells[1]): cells[-1] for cells in [await r.locator("td").all_inner_texts() for r in await rows.all()]
    }
    assert shown == {
        (str(r["day"]), rest if r["other"] else r["feature"]): shown_usd(r["cost_usd"]) for r in expected["rows"]
    }
    # 17 features: the chart draws the ten dearest and the rest, as the table does.
    labels = await page.evaluate(
        "() => window.Chart.getChart(document.querySelector('main canvas')).data.datasets.map((d) => d.label)"
    )
    assert labels[-1] == rest
    assert sorted(labels[:-1]) == sorted({r["feature"] for r in expected["rows"] if not r["other"]})
    assert len(labels) == 11


async def test_markup_in_a_tag_value_renders_as_text(world: World, watched: Watched) -> None:
    page = watched.page
    await sign_in(page, world)
    features = page.get_by_role("table", name="Top features")
    await expect(features.get_by_role("cell", name=XSS_TAG, exact=True)).to_be_visible()
    assert await page.locator("main img").count() == 0
    await open_page(page, "explore")
    form = page.get_by_role("form", name="Usage query")
    await form.get_by_label("feature", exact=True).check()
    async with page.expect_response(lambda r: "/v1/usage" in r.url):
        await form.get_by_role("button", name="Show").click()
    await expect(page.locator("main table").get_by_role("cell", name=XSS_TAG, exact=True).first).to_be_visible()
    assert await page.locator("main img").count() == 0  # and no dialog: the fixture fails on any alert()


async def test_the_navigation_shows_only_what_a_viewer_may_do(world: World, watched: Watched) -> None:
    await world.join("viewer@example.com", "viewer")
    page = watched.page
    await sign_in(page, world, email="viewer@example.com")
    nav = page.get_by_role("navigation", name="Pages")
    visible = await nav.get_by_role("link").all_inner_texts()
    assert visible == ["Overview", "Explore", "Budgets and alerts", "Findings", "Data and privacy"]
    await open_page(page, "budgets")
    await expect(page.get_by_role("form", name="New budget")).to_have_count(0)
    await open_page(page, "privacy")
    await expect(page.get_by_role("form", name="Erase a customer")).to_have_count(0)
    await page.goto(f"{world.url}/audit")  # typed by hand: the first page the role allows instead
    await ready(page)
    await expect(page.locator("main h1")).to_have_text("Overview")
