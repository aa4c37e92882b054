"""Which routes name no permission, derived from the app itself, and which ones the security tests expect to.

`build_http_app` runs `document_permissions` (common/http_auth.py), which writes `x-permission` into the OpenAPI
operation of every route that checks exactly one action of access.py (for a route left out of the schema, into
the operation it would have). A route without it is guarded by no member's role and no key's scope. The tests
take those routes from here and assert that they are exactly the ones expected below, so a route that loses its
check fails them instead of being treated as public.
"""

from __future__ import annotations

from fastapi import FastAPI

from spendstream.common.http_auth import api_routes

# The routes a person uses before they have a session or a key (people: sign-in, an invitation's acceptance, a
# one-time sign-in link, single sign-on, and which of those the installation offers, asked before signing in):
# they take no key, and a forged one changes nothing about them.
SIGN_IN = frozenset(
    {
        "/v1/auth/signin",
        "/v1/auth/methods",
        "/v1/invitations/accept",
        "/v1/auth/link",
        "/v1/auth/oidc/start",
        "/v1/auth/oidc/callback",
    }
)
# Health, readiness and metrics: no credential, nothing of any workspace.
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
# Guarded by a credential of their own instead: the services' internal token, Stripe's signature, a workspace
# erasure's receipt token (X-Receipt-Token, which outlives the workspace's keys).
OWN_CREDENTIAL = frozenset(
    {
        "/v1/deletions/{request_id}/receipt",
        "/internal/v1/audit/verify",
        "/internal/v1/prices/recompute",
        "/internal/v1/prices/recompute/{job_id}",
        "/internal/v1/spend",
        "/v1/stripe/webhook/{workspace_id}",
    }
)


def unguarded_paths(app: FastAPI) -> frozenset[str]:
    """The path of every route of `app` (included routers' too) whose operation names no permission."""
    return frozenset(
        path for path, route in api_routes(app.routes) if "x-permission" not in (route.openapi_extra or {})
    )


def public_paths(app: FastAPI) -> frozenset[str]:
    """The routes of `app` that no credential guards: unguarded, and none of OWN_CREDENTIAL."""
    return unguarded_paths(app) - OWN_CREDENTIAL
