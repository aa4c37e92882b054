"""The console's routes: the HTML shell at `/` and at each page's path, and its assets under `/assets/`.

Every answer carries the security headers: a strict Content-Security-Policy (scripts, styles and connections
only from this origin; no inline script; no framing), no MIME sniffing, no referrer beyond the origin.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from spendstream.common.access import ROLE_ACTIONS, SCOPE_ACTIONS
from spendstream.console.assets import Assets

NAVIGATION: Final[Mapping[str, str]] = MappingProxyType(
    {
        "overview": "Overview",
        "explore": "Explore",
        "budgets": "Budgets and alerts",
        "findings": "Findings",
        "privacy": "Data and privacy",
        "members": "Members and keys",
        "audit": "Audit log",
    }
)
"""The console's navigation (`<nav aria-label="Pages">` in static/index.html), in its order: each page's name (its
path and `data-page`) and the name of its link, as a person (and a browser test or benchmark) finds it."""

# Each page is a path of its own so that a link can be shared and reloaded; all of them serve the same shell.
# Account, sign-in and an invitation's acceptance are reached otherwise than by the navigation.
PAGES = (*NAVIGATION, "account", "signin", "invite")

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def build_router(assets: Assets) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    shell = assets.get("index.html")
    assert shell is not None  # Assets.load refuses a build without it

    async def page() -> Response:
        # The shell is never cached: it names the current assets; the assets themselves revalidate by ETag.
        return Response(
            shell.body, media_type=shell.media_type, headers={**SECURITY_HEADERS, "Cache-Control": "no-store"}
        )

    router.add_api_route("/", page, methods=["GET"])
    for name in PAGES:
        router.add_api_route(f"/{name}", page, methods=["GET"])

    @router.get("/console/access.json")
    async def access() -> JSONResponse:
        # The one table (access.py), for a console signed in with an API key: /v1/me answers sessions only.
        body = {
            "roles": {role: sorted(actions) for role, actions in ROLE_ACTIONS.items()},
            "scopes": {scope: sorted(actions) for scope, actions in SCOPE_ACTIONS.items()},
        }
        return JSONResponse(body, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})

    @router.get("/assets/{name:path}")
    async def asset(name: str, request: Request) -> Response:
        found = assets.get(name)
        if found is None or name == "index.html":
            return Response(b"not found\n", status_code=404, media_type="text/plain", headers=SECURITY_HEADERS)
        headers = {**SECURITY_HEADERS, "ETag": found.etag, "Cache-Control": "no-cache"}
        if request.headers.get("if-none-match") == found.etag:
            return Response(status_code=304, headers=headers)
        return Response(found.body, media_type=found.media_type, headers=headers)

    return router
