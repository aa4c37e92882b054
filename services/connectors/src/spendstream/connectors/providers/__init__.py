"""The providers' usage and cost APIs, each read into `ProviderUsage` rows per UTC day."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import date
from typing import Protocol

from spendstream.common.records import ProviderUsage
from spendstream.connectors.readonly_http import ReadOnlyHttp

Days = dict[date, list[ProviderUsage]]


class ProviderReader(Protocol):
    def headers(self, admin_key: str) -> dict[str, str]:
        """The authentication headers of the provider's admin API."""
        ...

    def read(self, http: ReadOnlyHttp, start: date, end: date) -> Awaitable[Days]:
        """Usage and billed cost of the UTC days [start, end), per day, model and project."""
        ...
