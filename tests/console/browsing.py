"""What a person does in the console, as steps the browser tests share."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page

from spendstream.console.pages import NAVIGATION
from tests.console.world import AXE, World


async def sign_in(page: Page, world: World, email: str | None = None, password: str | None = None) -> None:
    """The sign-in form: POST /v1/auth/signin, then the overview."""
    await page.goto(f"{world.url}/signin")
    form = page.get_by_role("form", name="Sign in with e-mail and password")
    await form.get_by_label("E-mail").fill(email or world.email)
    await form.get_by_label("Password").fill(password or world.password)
    async with page.expect_response(lambda r: r.url.endswith("/v1/auth/signin")) as answer:
        await form.get_by_role("button", name="Sign in").click()
    assert (await answer.value).status == 200
    await ready(page)


async def ready(page: Page) -> None:
    await page.wait_for_selector("main[data-ready='true']")


async def open_page(page: Page, name: str) -> None:
    """Two clicks at most: the brand (home) and the page's link in the navigation."""
    await page.get_by_role("navigation", name="Pages").get_by_role("link", name=NAVIGATION[name]).click()
    await page.wait_for_url(f"**/{name}")
    await ready(page)


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core (from npm, services/console/web/node_modules) run in the page: serious and critical ones."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        # Injected through the test harness, not as a <script> of the page: the CSP forbids inline scripts,
        # so Playwright's script tag would be refused; evaluating the source runs it in the page as well.
        await page.evaluate(AXE.read_text())
    found: list[dict[str, Any]] = await page.evaluate(
        """async () => {
          const result = await axe.run(document, { resultTypes: ["violations"] });
          return result.violations
            .filter((v) => v.impact === "serious" || v.impact === "critical")
            .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")) }));
        }"""
    )
    return found


def shown_usd(value: str) -> str:
    """The console's money format (dom.js `usd`): four decimals under a dollar, two from there."""
    n = float(value)
    digits = 4 if 0 < abs(n) < 1 else 2
    return f"${n:,.{digits}f}"
