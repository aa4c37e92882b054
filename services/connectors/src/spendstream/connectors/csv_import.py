"""The CSV of daily provider usage, for providers without a usage API: parsed and validated whole before
anything is published, so a file with one bad line stores nothing.

Columns (a header line names them, in any order; unknown columns are refused):
  required  day (YYYY-MM-DD), provider, model, input_tokens, output_tokens, cost (decimal, in `currency`'s major
            unit: dollars, not cents, as every connector stores it; providers/money.py)
  optional  project, api_key, cached_input_tokens, cache_creation_input_tokens, cache_creation_1h_input_tokens,
            requests, currency (ISO 4217, default usd)
Token counts are spendstream's: `input_tokens` includes cache reads and writes. Rows of the same day, provider,
model, project and API key add up. Each (provider, day) of the file replaces that day of earlier imports.
Errors name the line (1 is the header) and the field, never the value.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from spendstream.common.records import ProviderDay, ProviderUsage

REQUIRED = ("day", "provider", "model", "input_tokens", "output_tokens", "cost")
OPTIONAL = (
    "project",
    "api_key",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "requests",
    "currency",
)
COUNTS = (
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "cache_creation_input_tokens",
    "cache_creation_1h_input_tokens",
    "requests",
)
MAX_LINES = 100_000
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$")
PROVIDER = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
CURRENCY = re.compile(r"^[A-Za-z]{3}$")
MAX_COUNT = 10**15


@dataclass(frozen=True, slots=True)
class LineError:
    line: int
    field: str
    code: str
    message: str


class ImportRefused(Exception):
    def __init__(self, errors: list[LineError]) -> None:
        super().__init__(f"{len(errors)} errors")
        self.errors = errors


def csv_connector_id(provider: str) -> str:
    """One pseudo-connector per provider of imported files: a re-import of a day replaces it."""
    return f"csv-{provider}"


def parse(text: str, workspace_id: str, now: datetime | None = None) -> list[ProviderDay]:
    """Every (provider, day) of the file as a ProviderDay; ImportRefused listing every bad line and field."""
    reader = csv.reader(io.StringIO(text))
    errors: list[LineError] = []
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        raise ImportRefused([LineError(1, "header", "missing", "the file has no header line")]) from None
    columns = [h.strip() for h in header]
    for name in REQUIRED:
        if name not in columns:
            errors.append(LineError(1, name, "missing_column", f"the header has no column '{name}'"))
    for name in columns:
        if name not in REQUIRED + OPTIONAL:
            errors.append(LineError(1, "header", "unknown_column", "the header names a column this format has not"))
    if len(set(columns)) != len(columns):
        errors.append(LineError(1, "header", "duplicate_column", "a column is named twice"))
    if errors:
        raise ImportRefused(errors)
    sums: dict[tuple[str, date, str, str, str, str], dict[str, object]] = {}
    line = 1
    try:
        for line, values in enumerate(reader, start=2):
            if line > MAX_LINES + 1:
                errors.append(LineError(line, "file", "too_many_lines", f"at most {MAX_LINES} lines a file"))
                break
            if not values or all(not v.strip() for v in values):
                continue  # a blank line
            if len(values) != len(columns):
                errors.append(LineError(line, "line", "wrong_field_count", f"expected {len(columns)} fields"))
                continue
            row = dict(zip(columns, (v.strip() for v in values), strict=True))
            parsed = _row(row, line, errors)
            if parsed is None:
                continue
            key, figures = parsed
            known = sums.get(key)
            if known is None:
                sums[key] = figures
            elif known["currency"] != figures["currency"]:
                errors.append(LineError(line, "currency", "mixed_currency", "another line of this group has another"))
            else:
                for name, value in figures.items():
                    if name != "currency" and value is not None:
                        known[name] = (known[name] or 0) + value  # type: ignore[operator]
                    elif name == "requests" and value is None:
                        known[name] = None
    except csv.Error:
        errors.append(LineError(line + 1, "line", "malformed_csv", "the line is not valid CSV (quotes)"))
    if errors:
        raise ImportRefused(errors)
    pulled_at = now or datetime.now(UTC)
    days: dict[tuple[str, date], list[ProviderUsage]] = defaultdict(list)
    for (provider, day, model, project, api_key, _), figures in sorted(sums.items()):
        days[(provider, day)].append(ProviderUsage(model=model, project=project, api_key=api_key, **figures))
    return [
        ProviderDay(
            workspace_id=workspace_id,
            connector_id=csv_connector_id(provider),
            provider=provider,
            day=day,
            rows=tuple(rows),
            source="csv",
            pulled_at=pulled_at,
        )
        for (provider, day), rows in sorted(days.items())
    ]


def _row(
    row: dict[str, str], line: int, errors: list[LineError]
) -> tuple[tuple[str, date, str, str, str, str], dict[str, object]] | None:
    before = len(errors)

    def bad(field: str, code: str, message: str) -> None:
        errors.append(LineError(line, field, code, message))

    try:
        day = date.fromisoformat(row["day"]) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["day"]) else None
    except ValueError:
        day = None
    if day is None or not date(1970, 1, 1) <= day <= date(2149, 6, 6):
        bad("day", "invalid_day", "a day is YYYY-MM-DD")
    if not PROVIDER.fullmatch(row["provider"]):
        bad("provider", "invalid_provider", "lowercase letters, digits, '_' or '-', at most 40")
    if not NAME.fullmatch(row["model"]):
        bad("model", "invalid_name", "1-200 characters of letters, digits and ._:/@-")
    for name in ("project", "api_key"):
        if row.get(name) and not NAME.fullmatch(row[name]):
            bad(name, "invalid_name", "1-200 characters of letters, digits and ._:/@-")
    figures: dict[str, object] = {}
    for name in COUNTS:
        text = row.get(name, "")
        if not text:
            if name in REQUIRED:
                bad(name, "missing", "a count is required")
            figures[name] = None if name == "requests" else 0
            continue
        if not text.isdigit() or int(text) > MAX_COUNT:
            bad(name, "invalid_count", "a whole number from 0 to 10^15")
            continue
        figures[name] = int(text)
    try:
        cost = Decimal(row["cost"])
        if not cost.is_finite() or cost < 0 or cost.as_tuple().exponent < -9 or abs(cost) >= 10**20:  # type: ignore[operator]
            raise InvalidOperation
        figures["cost"] = cost
    except InvalidOperation:
        bad("cost", "invalid_cost", "a non-negative decimal with at most 9 places")
    currency = row.get("currency") or "usd"
    if not CURRENCY.fullmatch(currency):
        bad("currency", "invalid_currency", "an ISO 4217 code of three letters")
    figures["currency"] = currency.lower()
    if len(errors) == before:
        inputs = figures["input_tokens"]
        parts = figures["cached_input_tokens"], figures["cache_creation_input_tokens"]
        if sum(parts) > inputs:  # type: ignore[arg-type,operator]
            bad("input_tokens", "parts_exceed_total", "cache reads and writes are parts of input_tokens")
        elif figures["cache_creation_1h_input_tokens"] > figures["cache_creation_input_tokens"]:  # type: ignore[operator]
            bad("cache_creation_1h_input_tokens", "parts_exceed_total", "a part of cache_creation_input_tokens")
    if len(errors) != before or day is None:
        return None
    key = (row["provider"], day, row["model"], row.get("project", ""), row.get("api_key", ""), str(figures["currency"]))
    return key, figures
