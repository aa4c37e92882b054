"""Fixtures of the browser tests: one world and one Chromium per session (starting either takes seconds), a
fresh browser context per test whose every request is checked to stay on 127.0.0.1 and whose console must stay
free of errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import Browser, ConsoleMessage, Dialog, Page, Route, async_playwright

from tests.console.world import CHROMIUM, World, build_world, stop_world
from tests.people.world import mail_server
from tests.support import Stack, drop_topics, new_isolation, provision


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    iso = new_isolation(stack, tmp_path_factory.mktemp("console"))
    await provision(iso)
    async with mail_server() as (mailbox, smtp_port):
        built = await build_world(iso, mailbox, smtp_port, iso.data_dir / "spendstream.log")
        try:
            yield built
        finally:
            await stop_world(built)
            await drop_topics(iso)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is missing: `make browser` (scripts/console-assets.sh --browser) installs it")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        await launched.close()


@dataclass
class Watched:
    """A page and what it did that it must not: console errors, uncaught exceptions, dialogs (an `alert(1)`
    that ran), requests to any host but 127.0.0.1."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)


@pytest_asyncio.fixture(loop_scope="session")
async def watched(browser: Browser) -> AsyncIterator[Watched]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = await context.new_page()
    seen = Watched(page)

    async def guard(route: Route) -> None:
        if urlsplit(route.request.url).hostname != "127.0.0.1":
            seen.outside.append(route.request.url)
            await route.abort()
        else:
            await route.continue_()

    def console(message: ConsoleMessage) -> None:
        if message.type == "error":
            seen.errors.append(f"{message.text} ({message.location.get('url', '')})")

    await context.route("**/*", guard)
    page.on("console", console)
    page.on("pageerror", lambda exc: seen.errors.append(f"uncaught: {exc}"))

    async def dialog(d: Dialog) -> None:
        seen.dialogs.append(d.message)
        await d.dismiss()

    page.on("dialog", dialog)
    try:
        yield seen
    finally:
        await context.close()
    assert seen.errors == [], seen.errors
    assert seen.outside == [], seen.outside
    assert seen.dialogs == [], seen.dialogs
