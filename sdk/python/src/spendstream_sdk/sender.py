"""What an answer of ingest's POST /v1/events means for a batch, and how long to wait before a retry.

The HTTP calls themselves are the meters' (a thread's httpx.Client, an event loop's httpx.AsyncClient); both read
the answer here, so they settle batches alike.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Any

from spendstream_sdk._version import __version__

# 429: rate limited or over quota; 5xx: the server (or a proxy before it) could not take the batch now. The events
# keep their ids, so a retry of a batch the server did store is answered as duplicates.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


class Outcome(Enum):
    SETTLED = "settled"  # the server answered for each event: stored (accepted or duplicate) or rejected
    RETRY = "retry"  # nothing settled; send the same batch again later
    REFUSED = "refused"  # the server refused the batch whole (a 4xx other than 429); a retry would not help


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    stored: int = 0
    rejected: int = 0
    retry_after: float | None = None
    error: str = ""  # the server's error code (or the rejection codes): never a field's value


def headers(api_key: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {api_key}",
        "Content-Type": "application/json",
        "Content-Encoding": "gzip",
        "User-Agent": f"spendstream-sdk-python/{__version__}",
    }


def events_url(url: str) -> str:
    """ingest's events route under `url` (a base URL, or the route itself)."""
    base = url.rstrip("/")
    return base if base.endswith("/v1/events") else f"{base}/v1/events"


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delay-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _body(content: bytes) -> dict[str, Any]:
    try:
        body = json.loads(content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def judge(status: int, content: bytes, retry_after: str | None, count: int) -> Verdict:
    """The verdict on a batch of `count` events from the answer's status, body and Retry-After header."""
    if status in RETRYABLE_STATUSES:
        return Verdict(Outcome.RETRY, retry_after=parse_retry_after(retry_after), error=str(status))
    body = _body(content)
    if status in (200, 202) or (status == 422 and isinstance(body.get("rejected"), list)):
        # 422 with `rejected`: every event was refused one by one (no valid event in the batch).
        rejections = body.get("rejected")
        rejected_indices = {r.get("index") for r in rejections if isinstance(r, dict)} if rejections else set()
        codes = sorted({str(r.get("code")) for r in rejections if isinstance(r, dict)}) if rejections else []
        rejected = len(rejected_indices)
        return Verdict(Outcome.SETTLED, stored=count - rejected, rejected=rejected, error=",".join(codes))
    return Verdict(Outcome.REFUSED, error=str(body.get("error") or status))


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential back-off with full jitter; a Retry-After the server sent is waited at least."""

    base: float = 0.5
    cap: float = 30.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        jittered = random.uniform(0, min(self.cap, self.base * 2**attempt))
        if retry_after is None:
            return jittered
        # At least what the server asked, plus a little spread so many clients do not return at once.
        return retry_after + random.uniform(0, min(1.0, retry_after * 0.1))
