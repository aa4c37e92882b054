"""The providers' usage and cost APIs, each read into `ProviderUsage` rows per UTC day."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from datetime import date
from typing import Any, Protocol

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


class Rows:
    """A report's figures per (day, model, project), added up across its buckets and results (one report's
    usage and cost land in the same row)."""

    def __init__(self, zero: Mapping[str, Any]) -> None:
        self._zero = {**zero, "cost": None, "currency": None}
        self._rows: dict[tuple[date, str, str], dict[str, Any]] = {}

    def row(self, day: date, model: str, project: str) -> dict[str, Any]:
        """The row's figures, to add to (a new row starts at `zero`, without cost)."""
        return self._rows.setdefault((day, model, project), dict(self._zero))

    def days(self) -> Days:
        """`ProviderUsage` rows per day, sorted; a row without a billed amount is in usd (its cost is None)."""
        days: Days = {}
        for (day, model, project), figures in sorted(self._rows.items()):
            fields = {**figures, "currency": figures["currency"] or "usd"}
            days.setdefault(day, []).append(ProviderUsage(model=model, project=project, **fields))
        return days
