"""Webhook signatures and the private-address guard."""

from __future__ import annotations

import time

import pytest

from spendstream.alerts.webhooks import Refused, check_target, signature, verify


def test_signature_covers_timestamp_and_body_and_expires() -> None:
    now = int(time.time())
    sig = signature(b"k", str(now), b'{"a":1}')
    assert verify(b"k", str(now), b'{"a":1}', sig)
    assert not verify(b"k", str(now), b'{"a":2}', sig)
    assert not verify(b"k", str(now + 1), b'{"a":1}', sig)
    assert not verify(b"other", str(now), b'{"a":1}', sig)
    assert not verify(b"k", str(now), b'{"a":1}', sig, now=now + 301)
    assert not verify(b"k", "not-a-number", b'{"a":1}', sig)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost:8080/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://169.254.169.254/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "ftp://example.com/",
    ],
)
async def test_private_loopback_and_non_http_targets_are_refused(url: str) -> None:
    with pytest.raises(Refused):
        await check_target(url, allow_private=False)


async def test_private_targets_pass_when_allowed() -> None:
    await check_target("http://127.0.0.1:9/", allow_private=True)
