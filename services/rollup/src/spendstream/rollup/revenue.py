"""Revenue: what a workspace's customers pay, stored beside the usage it is compared with (/v1/margin).

A record is keyed by (source, source_id): the same key again is a correction that replaces the amount, never a
second one; a refund or a credit note is a record of its own with a negative amount. A record pays for a period
(a month, or a date range); the margin attributes it to the month its period starts in. Plan prices give a
monthly amount to customers billed by plan; currency rates (USD per unit, per month) convert every other
currency. Only ids, amounts, currencies and dates are stored: nothing personal about a customer.
"""

from __future__ import annotations

import calendar
import csv
import io
import time
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from clickhouse_connect.driver.client import Client
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

Id = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
# Months 1970-01 to 2139-12: a ClickHouse Date holds 1970-01-01 to 2149-06-06.
MONTH_PATTERN = r"^(19[7-9]\d|20\d\d|21[0-3]\d)-(0[1-9]|1[0-2])$"
Month = Annotated[str, StringConstraints(pattern=MONTH_PATTERN)]
Day = Annotated[date, Field(ge=date(1970, 1, 1), le=date(2149, 5, 31))]
Amount = Annotated[Decimal, Field(max_digits=27, decimal_places=9, allow_inf_nan=False)]
MAX_RECORDS = 1000


def month_start(month: str) -> date:
    year, number = (int(p) for p in month.split("-"))
    return date(year, number, 1)


def month_end(first: date) -> date:
    return first.replace(day=calendar.monthrange(first.year, first.month)[1])


def month_of(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


class RevenueRecord(BaseModel):
    """One payment (or, negative, a refund or credit note) of a customer, for a month or a date range."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: Id = Field(description="where the record comes from: `stripe`, `invoices`, `csv`, ...")
    source_id: Id = Field(description="the record's id in its source: sending it again replaces the record")
    customer_id: Id = Field(description="the same opaque id the usage events carry in `tags.customer_id`")
    customer_plan: Annotated[str, StringConstraints(max_length=120)] = ""
    amount: Amount = Field(description="a decimal in the currency's units; negative for refunds and credit notes")
    currency: Currency = Field(description="ISO 4217, upper case")
    month: Month | None = Field(default=None, description="the month it pays for (YYYY-MM), or period_start/end")
    period_start: Day | None = None
    period_end: Day | None = None

    @model_validator(mode="after")
    def _one_period(self) -> RevenueRecord:
        if self.month is not None:
            if self.period_start is not None or self.period_end is not None:
                raise ValueError("give either month or period_start and period_end")
            return self
        if self.period_start is None or self.period_end is None:
            raise ValueError("give month, or period_start and period_end")
        if self.period_end < self.period_start:
            raise ValueError("period_end is before period_start")
        return self

    def period(self) -> tuple[date, date]:
        if self.month is not None:
            first = month_start(self.month)
            return first, month_end(first)
        assert self.period_start is not None and self.period_end is not None
        return self.period_start, self.period_end


class PlanPrice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    plan: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    monthly_amount: Annotated[Decimal, Field(ge=0, max_digits=27, decimal_places=9, allow_inf_nan=False)]
    currency: Currency


class CurrencyRate(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    month: Month
    currency: Currency
    usd_per_unit: Annotated[Decimal, Field(gt=0, max_digits=38, decimal_places=12, allow_inf_nan=False)]


class RecordError(BaseModel):
    """A refused record: where (its index in the batch, or its CSV line) and why, never its values."""

    index: int | None = None
    line: int | None = None
    field: str
    code: str
    message: str


def record_errors(exc: ValidationError) -> list[tuple[str, str, str]]:
    """(field, code, message) per problem; pydantic's messages quote no input (`input` is left out)."""
    out = []
    for e in exc.errors(include_input=False, include_url=False):
        field = ".".join(str(p) for p in e["loc"]) or "record"
        message = str(e["msg"]) if e["type"] != "value_error" else str(e["msg"]).removeprefix("Value error, ")
        out.append((field, str(e["type"]), message))
    return out


def validate_batch(items: list[Any]) -> tuple[list[RevenueRecord], list[RecordError]]:
    """The valid records and one error per problem of the others (index, field, code)."""
    good: list[RevenueRecord] = []
    errors: list[RecordError] = []
    for index, item in enumerate(items):
        try:
            good.append(RevenueRecord.model_validate(item))
        except ValidationError as exc:
            errors += [RecordError(index=index, field=f, code=c, message=m) for f, c, m in record_errors(exc)]
    return good, errors


CSV_COLUMNS = ("source", "source_id", "customer_id", "customer_plan", "amount", "currency", "month")
_OPTIONAL_CSV = {"customer_plan", "month", "period_start", "period_end"}


def parse_csv(text: str) -> tuple[list[RevenueRecord], list[RecordError]]:
    """Records of a CSV file (header: source,source_id,customer_id,amount,currency and month or
    period_start,period_end; customer_plan optional). Errors name the line (1 is the header) and the column."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    required = {"source", "source_id", "customer_id", "amount", "currency"}
    missing = sorted(required - set(header))
    unknown = sorted(set(header) - required - _OPTIONAL_CSV)
    if missing or unknown:
        problem = f"missing column {missing[0]}" if missing else f"unknown column {unknown[0]!r}"
        return [], [RecordError(line=1, field=missing[0] if missing else "header", code="header", message=problem)]
    good: list[RevenueRecord] = []
    errors: list[RecordError] = []
    for row in reader:
        line = reader.line_num
        if None in row:
            errors.append(
                RecordError(line=line, field="row", code="too_many_fields", message="more fields than columns")
            )
            continue
        values = {k: v for k, v in row.items() if v not in ("", None) or k in required}
        amount = values.get("amount")
        if isinstance(amount, str):
            try:
                values["amount"] = Decimal(amount.strip())
            except InvalidOperation:
                errors.append(RecordError(line=line, field="amount", code="decimal", message="not a decimal number"))
                continue
        try:
            good.append(RevenueRecord.model_validate(values))
        except ValidationError as exc:
            errors += [RecordError(line=line, field=f, code=c, message=m) for f, c, m in record_errors(exc)]
    return good, errors


def _version() -> int:
    return time.time_ns()


class RevenueStore:
    """Reads and writes of the revenue, plan_prices, currency_rates tables (schema.py, migration 12)."""

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self.db = database

    def write(self, workspace_id: str, records: list[RevenueRecord]) -> None:
        version = _version()
        rows = []
        for i, r in enumerate(records):
            start, end = r.period()
            # Later records of the same batch win over earlier ones with the same key, as if sent one by one.
            rows.append(
                (workspace_id, r.source, r.source_id, r.customer_id, r.customer_plan, r.amount, r.currency)
                + (start, end, version + i)
            )
        if rows:
            self._client.insert(
                f"{self.db}.revenue",
                rows,
                column_names=(
                    "workspace_id",
                    "source",
                    "source_id",
                    "customer_id",
                    "customer_plan",
                    "amount",
                    "currency",
                    "period_start",
                    "period_end",
                    "version",
                ),
            )

    def find(self, workspace_id: str, source: str, source_id: str) -> dict[str, Any] | None:
        result = self._client.query(
            f"SELECT customer_id, customer_plan, period_start, period_end FROM {self.db}.revenue FINAL "
            "WHERE workspace_id = {ws:String} AND source = {s:String} AND source_id = {id:String}",
            parameters={"ws": workspace_id, "s": source, "id": source_id},
        )
        if not result.result_rows:
            return None
        return dict(zip(result.column_names, result.result_rows[0], strict=True))

    def records(self, workspace_id: str, start: date | None = None, end: date | None = None) -> list[dict[str, Any]]:
        """The current records (corrections applied) whose period starts within [start, end]."""
        where = "workspace_id = {ws:String}"
        params: dict[str, Any] = {"ws": workspace_id}
        if start is not None and end is not None:
            where += " AND period_start >= {start:Date} AND period_start <= {end:Date}"
            params.update(start=start, end=end)
        result = self._client.query(
            "SELECT source, source_id, customer_id, customer_plan, amount, currency, period_start, period_end "
            f"FROM {self.db}.revenue FINAL WHERE {where} ORDER BY source, source_id",
            parameters=params,
        )
        return [dict(zip(result.column_names, r, strict=True)) for r in result.result_rows]

    def set_plans(self, workspace_id: str, plans: list[PlanPrice]) -> None:
        version = _version()
        self._client.insert(
            f"{self.db}.plan_prices",
            [(workspace_id, p.plan, p.monthly_amount, p.currency, version) for p in plans],
            column_names=("workspace_id", "plan", "amount", "currency", "version"),
        )

    def plans(self, workspace_id: str) -> dict[str, tuple[Decimal, str]]:
        rows = self._client.query(
            f"SELECT plan, amount, currency FROM {self.db}.plan_prices FINAL WHERE workspace_id = {{ws:String}}",
            parameters={"ws": workspace_id},
        ).result_rows
        return {str(p): (Decimal(a), str(c)) for p, a, c in rows}

    def set_rates(self, workspace_id: str, rates: list[CurrencyRate]) -> None:
        version = _version()
        self._client.insert(
            f"{self.db}.currency_rates",
            [(workspace_id, month_start(r.month), r.currency, r.usd_per_unit, version) for r in rates],
            column_names=("workspace_id", "month", "currency", "usd_per_unit", "version"),
        )

    def rates(self, workspace_id: str) -> dict[tuple[str, str], Decimal]:
        """(YYYY-MM, currency) -> USD per unit."""
        rows = self._client.query(
            f"SELECT month, currency, usd_per_unit FROM {self.db}.currency_rates FINAL "
            "WHERE workspace_id = {ws:String}",
            parameters={"ws": workspace_id},
        ).result_rows
        return {(month_of(m), str(c)): Decimal(r) for m, c, r in rows}

    def workspaces(self) -> list[str]:
        """Every workspace with revenue records or plan prices."""
        rows = self._client.query(
            f"SELECT DISTINCT workspace_id FROM {self.db}.revenue UNION DISTINCT "
            f"SELECT DISTINCT workspace_id FROM {self.db}.plan_prices"
        ).result_rows
        return sorted(str(r[0]) for r in rows)
