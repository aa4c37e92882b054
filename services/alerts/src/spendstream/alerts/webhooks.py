"""Signed webhooks: HMAC-SHA256 over timestamp and body, sent only to public addresses unless allowed.

A receiver recomputes `v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>`, refuses a timestamp outside its
tolerance, and remembers `X-Spendstream-Delivery` (the alert id) to refuse a replay inside it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import socket
import time
from urllib.parse import urlsplit

import httpx

TIMESTAMP_HEADER = "X-Spendstream-Timestamp"
SIGNATURE_HEADER = "X-Spendstream-Signature"
DELIVERY_HEADER = "X-Spendstream-Delivery"
DEFAULT_TOLERANCE_SECONDS = 300


class Refused(Exception):
    """Not worth retrying: the target is not allowed, or answered with a permanent error. `code` is logged."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class Failed(Exception):
    """Worth retrying: connection error, timeout, 5xx, 429."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return "v1=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    received: str,
    *,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """For receivers: the signature matches and the timestamp is fresh (replays must also be remembered)."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent_at) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), received)


def _forbidden(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified


async def check_target(url: str, allow_private: bool) -> None:
    """Raise Refused when any address the host resolves to is loopback, private, link-local or reserved."""
    try:
        # urlsplit and .port raise ValueError (a bad IPv6 bracket, a port out of range); httpx refuses others.
        parts = urlsplit(url)
        port = parts.port
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL):
        raise Refused("invalid_url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("invalid_url")
    if allow_private:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port or 443, type=socket.SOCK_STREAM)
    except UnicodeError:  # a host name IDNA cannot encode (a label over 63 characters, ...)
        raise Refused("invalid_url") from None
    except OSError:
        raise Failed("dns_error") from None
    if any(_forbidden(str(info[4][0])) for info in infos):
        raise Refused("private_address")


class WebhookSender:
    def __init__(self, client: httpx.AsyncClient, allow_private: bool) -> None:
        self._client = client
        self._allow_private = allow_private

    async def send(self, url: str, secret: bytes, alert_id: str, body: bytes) -> int:
        """POST once; returns the status of a 2xx answer, raises Refused or Failed otherwise."""
        # Checked at every attempt, not only when the budget was saved: DNS can change in between.
        await check_target(url, self._allow_private)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            DELIVERY_HEADER: alert_id,
            SIGNATURE_HEADER: signature(secret, timestamp, body),
            "User-Agent": "spendstream-alerts/1",
        }
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            raise Failed("timeout") from None
        except httpx.HTTPError:
            raise Failed("connection_error") from None
        if 200 <= response.status_code < 300:
            return response.status_code
        if response.status_code in (408, 425, 429) or response.status_code >= 500:
            raise Failed(f"http_{response.status_code}")
        raise Refused(f"http_{response.status_code}")
