"""Following `has_more` / `next_page` through every page of a bucketed report."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from spendstream.connectors.readonly_http import Params, ReadOnlyHttp

# A bound on pages per request window: a provider that keeps answering `has_more` must not hold a round forever.
MAX_PAGES = 1000


class MalformedReport(Exception):
    """A provider's answer without the documented shape (named by a code, never quoted)."""


async def buckets(http: ReadOnlyHttp, path: str, params: Params) -> AsyncIterator[Mapping[str, Any]]:
    """Every bucket of every page of the report."""
    page: str | None = None
    for _ in range(MAX_PAGES):
        body = await http.get(path, {**params, "page": page} if page else params)
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            raise MalformedReport("no_data")
        for bucket in body["data"]:
            if not isinstance(bucket, dict) or not isinstance(bucket.get("results"), list):
                raise MalformedReport("bucket_without_results")
            yield bucket
        if not body.get("has_more"):
            return
        page = body.get("next_page")
        if not isinstance(page, str) or not page:
            raise MalformedReport("has_more_without_next_page")
    raise MalformedReport("too_many_pages")
