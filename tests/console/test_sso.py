"""Single sign-on from the console's sign-in page, in a real Chromium: with an OpenID provider configured (the
real `oidc-provider` of tests/oidc_provider), the page offers "Sign in with SSO", and the link goes through the
provider's own login and consent forms back to people's callback, which leaves the browser signed in.

The console and people serve one origin here, as in the monolith, on a real port; nothing else is needed to sign
in, so nothing else runs (the pages' data routes are not under test)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import pytest
import uvicorn
from playwright.async_api import Browser, expect

from spendstream.common.service import build_http_app
from spendstream.console.app import create_service as create_console
from spendstream.console.settings import ConsoleSettings
from spendstream.people.app import create_service as create_people
from spendstream.people.bootstrap import add_member
from spendstream.people.settings import PeopleSettings
from tests.console.browsing import axe_violations
from tests.people.oidc_provider import CLIENTS, running
from tests.people.world import FAST_HASHING
from tests.support import Stack, drop_topics, eventually, free_port, new_isolation, provision

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session")]


async def test_with_a_provider_the_sign_in_page_offers_sso_and_it_signs_the_invited_person_in(
    stack: Stack, browser: Browser, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    iso = new_isolation(stack, tmp_path)
    await provision(iso)
    secret, method = CLIENTS["spendstream-basic"]
    try:
        with running(tmp_path, redirect_urls=[f"{url}/v1/auth/oidc/callback"]) as provider:
            people = iso.settings(
                PeopleSettings,
                public_url=url,
                oidc_issuer=provider.issuer,
                oidc_client_id="spendstream-basic",
                oidc_client_secret=secret,
                oidc_redirect_url=f"{url}/v1/auth/oidc/callback",
                oidc_token_auth_method=method,
                **FAST_HASHING,
            )
            email = f"sso.{uuid.uuid4().hex[:8]}@example.com"
            await add_member(people.model_copy(update={"smtp_host": ""}), "ws_console_sso", email, "viewer")
            app = build_http_app([create_console(iso.settings(ConsoleSettings)), create_people(people)])
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
            serving = asyncio.create_task(server.serve())
            try:

                async def started() -> bool:
                    return server.started

                await eventually(started, timeout=60)
                context = await browser.new_context()
                try:
                    page = await context.new_page()
                    await page.goto(f"{url}/signin")
                    link = page.get_by_role("link", name="Sign in with SSO")
                    await expect(link).to_have_attribute("href", "/v1/auth/oidc/start")
                    assert await axe_violations(page) == []
                    await link.click()
                    # The provider's own pages: its login form (any password), then its consent form.
                    await page.wait_for_url(f"{provider.issuer}/**")
                    await page.locator("input[name='login']").fill(f"verified:{email}")
                    await page.locator("input[name='password']").fill("any password")
                    await page.locator("button[type='submit']").click()
                    await page.locator("input[name='prompt'][value='consent']").wait_for(state="attached")
                    await page.locator("button[type='submit']").click()
                    await page.wait_for_url(f"{url}/**")
                    me = await page.request.get(f"{url}/v1/me")
                    assert me.status == 200, await me.text()
                    assert (await me.json())["email"] == email and (await me.json())["role"] == "viewer"
                finally:
                    await context.close()
            finally:
                server.should_exit = True
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(serving, timeout=30)
    finally:
        await drop_topics(iso)
