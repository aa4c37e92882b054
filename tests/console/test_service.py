"""The console's own HTTP surface, served in-process: the shell at `/` and at every page path with the security
headers, its assets by exact name with an ETag, nothing else from the file system, the role table for key
sign-ins, and a start refused without the npm-built libraries."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from spendstream.common.access import ROLE_ACTIONS, SCOPE_ACTIONS
from spendstream.common.service import build_http_app
from spendstream.console.__main__ import main
from spendstream.console.app import create_service
from spendstream.console.assets import STATIC, Assets, AssetsMissing
from spendstream.console.pages import CSP, PAGES
from spendstream.console.settings import ConsoleSettings


@pytest.fixture
async def client() -> httpx.AsyncClient:
    app = build_http_app([create_service(ConsoleSettings())])
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console")


def test_the_policy_allows_only_this_origin_and_no_framing() -> None:
    directives = dict(d.split(" ", 1) for d in CSP.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"  # no 'unsafe-inline', no 'unsafe-eval', no other host
    assert directives["style-src"] == "'self'"
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'self'"


@pytest.mark.parametrize("path", ["/", *(f"/{p}" for p in PAGES)])
async def test_every_page_path_serves_the_shell_with_the_security_headers(client: httpx.AsyncClient, path: str) -> None:
    async with client:
        answer = await client.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.headers["content-security-policy"] == CSP
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["cache-control"] == "no-store"
    assert answer.text == (STATIC / "index.html").read_text()


async def test_the_shell_loads_no_inline_script_and_nothing_from_another_host(client: httpx.AsyncClient) -> None:
    async with client:
        html = (await client.get("/")).text
    assert "<script>" not in html and "http://" not in html and "https://" not in html
    assert 'src="/assets/vendor/chart.umd.js"' in html


async def test_an_asset_is_served_by_its_name_and_revalidated_by_etag(client: httpx.AsyncClient) -> None:
    async with client:
        first = await client.get("/assets/js/app.js")
        again = await client.get("/assets/js/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert first.status_code == 200 and first.headers["content-type"] == "text/javascript; charset=utf-8"
    assert first.content == (STATIC / "js" / "app.js").read_bytes()
    assert again.status_code == 304 and again.content == b""
    assert again.headers["content-security-policy"] == CSP


@pytest.mark.parametrize(
    "path",
    ["/assets/../pages.py", "/assets/js/../../assets.py", "/assets/vendor/chart.js.LICENSE.md", "/assets/nope.js"],
)
async def test_nothing_but_the_known_assets_is_served(client: httpx.AsyncClient, path: str) -> None:
    async with client:
        answer = await client.get(path)
    assert answer.status_code == 404


async def test_the_role_table_is_access_pys(client: httpx.AsyncClient) -> None:
    async with client:
        body = (await client.get("/console/access.json")).json()
    assert body["roles"] == {r: sorted(a) for r, a in ROLE_ACTIONS.items()}
    assert body["scopes"] == {s: sorted(a) for s, a in SCOPE_ACTIONS.items()}


def test_without_the_built_libraries_the_console_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "js").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html>")
    (tmp_path / "js" / "app.js").write_text("")
    with pytest.raises(AssetsMissing, match=r"vendor/chart\.umd\.js.*make install"):
        Assets.load(tmp_path)


def test_check_validates_the_settings_and_assets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--check"]) == 0
    assert capsys.readouterr().out.strip() == "console configuration is valid"
