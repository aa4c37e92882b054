"""The client of a request, as every per-client decision reads it: the key brake, the sign-in lockout, the audit's
client hash and the session cookie's Secure flag.

Behind a reverse proxy listed in `trusted_proxies`, `service.serve` has already put the forwarded client and
scheme into the request, and from any other peer the forwarding headers were ignored; so the request's own
client and scheme are the truth here, and no route reads X-Forwarded-* itself.
"""

from __future__ import annotations

from starlette.requests import Request


def client_address(request: Request) -> str:
    """The client's address, or "" when the server does not know it (a Unix socket)."""
    return request.client.host if request.client else ""


def over_https(request: Request) -> bool:
    """Whether the browser reached the installation over TLS (at this server or at the trusted proxy)."""
    return request.url.scheme == "https"
