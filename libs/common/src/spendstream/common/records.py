"""The records that travel on Kafka topics between services (`topics.py` names each topic's record type).

Tenants (workspaces, API keys), content-free problem reports (rejections, dead letters), and alerts' budgets
and fired alerts. The erasure saga's records live in `erasure.py`; sealed usage envelopes in `envelope.py`.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# A day ClickHouse's Date holds (1970-01-01 to 2149-06-06): every day that reaches a table is one.
StoredDay = Annotated[date, Field(ge=date(1970, 1, 1), le=date(2149, 6, 6))]
KeyScope = Literal["ingest", "read", "admin"]
Role = Literal["viewer", "member", "admin", "owner"]
AlertKind = Literal["threshold", "forecast", "spike"]
DataAlertKind = Literal[
    "completeness_gap", "unpriced_model", "margin_customer", "margin_plan", "provider_drift", "connector_unauthorised"
]
ScopeTag = Literal["feature", "customer_id"]
# What a hard budget answers while its live state (Redis) is unreachable: deny every reservation it covers
# (fail closed, the default) or allow them, saying so in each answer.
RedisDownPolicy = Literal["deny", "allow"]


class RejectionRecord(BaseModel):
    """An event refused at the Kafka-native intake: where and why, never what it held."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workspace_id: str | None
    source_topic: str
    source_partition: int
    source_offset: int
    index: int | None
    field: str
    code: str
    at: datetime


class DeadLetter(BaseModel):
    """A record a consumer could not process: its coordinates and a reason code, no payload."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    consumer: str
    source_topic: str
    source_partition: int
    source_offset: int
    workspace_id: str | None
    reason: str
    at: datetime


class WorkspaceRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    workspace_id: str
    name: str
    plan: str
    monthly_event_quota: int  # -1: unlimited
    status: Literal["active", "cancelled", "deleted"] = "active"
    cancelled_at: datetime | None = None
    created_at: datetime


class ApiKeyRecord(BaseModel):
    """An API key as stored: only its SHA-256 hash, never the key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_hash: str
    key_id: str
    workspace_id: str
    scope: KeyScope
    created_at: datetime
    revoked_at: datetime | None = None
    # The member who issued the key (None: the operator, at workspace creation or from the CLI). The key never
    # does more than that member's role allows, read live (`access.allowed`).
    issued_by: str | None = None


class BudgetScope(BaseModel):
    """The budget counts only events whose tag `tag` equals `value`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tag: ScopeTag
    value: Annotated[str, StringConstraints(min_length=1, max_length=120)]


class SealedWebhook(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    webhook_id: str
    url: str
    kek_id: str
    sealed_secret: bytes  # nonce || AESGCM(KEK).encrypt(secret), AAD = alerts.webhook|kek_id|ws|budget|webhook


class BudgetRecord(BaseModel):
    """A budget as stored on `alerts.budgets.v1`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    budget_id: str
    workspace_id: str
    name: str
    amount_usd: Decimal
    scope: BudgetScope | None
    thresholds: tuple[int, ...]
    webhooks: tuple[SealedWebhook, ...]
    emails: tuple[str, ...]
    forecast: bool
    spike_multiple: Decimal | None
    # Bumped on every change; a replica evaluating an older revision defers to the newer one (see thresholds).
    revision: int
    created_at: datetime
    updated_at: datetime
    # Hard: calls reserve before they run and are refused past the amount (alerts' reservations.py).
    # Defaults keep the records written before these fields readable.
    hard: bool = False
    on_redis_unavailable: RedisDownPolicy = "deny"


class FiredAlert(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    alert_id: str
    workspace_id: str
    budget_id: str
    budget_revision: int
    kind: AlertKind
    threshold_pct: int | None = None
    period: str  # YYYY-MM (threshold, forecast) or YYYY-MM-DD (spike)
    amount_usd: str
    spend_usd: str
    projected_usd: str | None = None  # forecast: month-end projection
    trailing_mean_usd: str | None = None  # spike: mean daily spend of the 7 days before
    fired_at: datetime


class IngestTally(BaseModel):
    """What ingest accepted in one envelope of `usage.events.v1`: its batch id and its events per UTC day of
    their timestamps. Counts only, no content; the completeness ledger's "accepted" (rollup/ledger.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workspace_id: str
    batch_id: str
    # UTC day of the events' timestamps -> events of the envelope on that day (a day a ClickHouse Date holds).
    days: dict[StoredDay, Annotated[int, Field(ge=1, le=10**9)]]
    at: datetime


class DataAlert(BaseModel):
    """A finding about a workspace's data that rollup raises and alerts delivers to the workspace's budget
    channels: a completeness gap that outlived the repair interval, a model the price table cannot price, or a
    customer or plan whose month's AI cost passed a share of its revenue (rollup/margin_watch.py).

    Ids and numbers only (a model name is the provider's public name). `alert_id` is stable per finding (per
    workspace, day, stage and gap; per workspace and model), so a re-publish is recognised as the same alert."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    alert_id: str
    workspace_id: str
    kind: DataAlertKind
    day: str | None = None  # completeness_gap: the UTC day (YYYY-MM-DD)
    stage: str | None = None  # completeness_gap: topic, raw or rollup (rollup/ledger.py)
    gap_events: int | None = None  # completeness_gap: events missing at that stage
    provider: str | None = None  # unpriced_model
    model: str | None = None  # unpriced_model
    events: int | None = None  # unpriced_model: its events so far
    tokens: int | None = None  # unpriced_model: their input and output tokens
    month: str | None = None  # margin_*: the month (YYYY-MM)
    customer_id: str | None = None  # margin_customer: the opaque id the events carry
    customer_plan: str | None = None  # margin_plan
    revenue_usd: str | None = None  # margin_*: the month's revenue
    ai_cost_usd: str | None = None  # margin_*: the month's AI cost so far
    threshold_pct: int | None = None  # margin_*: the share of revenue the cost passed
    connector_id: str | None = None  # provider_drift, connector_unauthorised
    metered_cost: str | None = None  # provider_drift: spendstream's cost of the day (decimal text)
    provider_cost: str | None = None  # provider_drift: the provider's billed cost of the day (decimal text)
    difference_pct: str | None = None  # provider_drift: (metered - provider) / provider, in percent
    fired_at: datetime


ConnectorProvider = Literal["openai", "anthropic", "csv"]
ConnectorStatus = Literal["pending", "ok", "failing", "unauthorised"]


class TagMapping(BaseModel):
    """Narrows reconciliation to one scope: events whose tag `tag` equals a key of `values` are the usage of the
    provider's project (OpenAI) or workspace (Anthropic) named by its value."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tag: Literal["feature", "route", "task_type", "customer_plan", "customer_id"]
    values: dict[Annotated[str, StringConstraints(min_length=1, max_length=120)], Annotated[str, Field(min_length=1)]]


class ConnectorRecord(BaseModel):
    """A provider connector as stored on `connectors.config.v1`: the admin key only sealed under the workspace's
    data key (AAD binds workspace and connector, connectors/sealing.py), its last four characters as a hint."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")

    connector_id: str
    workspace_id: str
    provider: ConnectorProvider
    key_version: int  # the data-key version that sealed the admin key
    sealed_key: bytes  # nonce || AESGCM(data key).encrypt(admin key), AAD = connector|workspace|connector_id
    key_hint: str  # the admin key's last four characters
    mapping: TagMapping | None = None
    created_at: datetime


class ConnectorState(BaseModel):
    """A connector's progress on `connectors.state.v1`: every day before `next_day` was pulled and published at
    least once (the cursor), and how the last round went."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    connector_id: str
    workspace_id: str
    next_day: date | None = None
    status: ConnectorStatus = "pending"
    reason: str | None = None  # a code: http_500, http_429, unauthorised, ...
    last_success_at: datetime | None = None
    updated_at: datetime


class ProviderUsage(BaseModel):
    """One provider's figures for one day, model and scope (project or workspace at the provider, API key)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    project: str = ""
    api_key: str = ""
    input_tokens: int = Field(ge=0)  # every input token, cache reads and writes included (as spendstream counts)
    cached_input_tokens: int = Field(default=0, ge=0)  # cache reads
    cache_creation_input_tokens: int = Field(default=0, ge=0)  # cache writes (5-minute and 1-hour)
    cache_creation_1h_input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(ge=0)
    requests: int | None = Field(default=None, ge=0)  # None: the provider does not count requests
    cost: Decimal | None = None  # billed, in `currency`; None: no cost reported for this row
    currency: str = "usd"


class ProviderDay(BaseModel):
    """Everything one connector read for one UTC day, on `connectors.usage.v1` keyed by `key`: a re-read of the
    day replaces the earlier one whole (a provider's late correction included, rows that vanished too)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workspace_id: str
    connector_id: str
    provider: str
    day: StoredDay
    rows: tuple[ProviderUsage, ...]
    source: Literal["api", "csv"]
    pulled_at: datetime

    @property
    def key(self) -> str:
        return f"{self.workspace_id}/{self.connector_id}/{self.day.isoformat()}"


class MemberRecord(BaseModel):
    """A member of a workspace as every service sees it: ids and role only. The person's e-mail, name and
    credentials stay in the people service's own store, so that erasing them leaves no copy on a topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    member_id: str
    workspace_id: str
    role: Role
    status: Literal["invited", "active", "removed"] = "active"
    created_at: datetime
    updated_at: datetime


AuditOutcome = Literal["allowed", "success", "failure", "denied"]
AuditActorKind = Literal["member", "key", "operator", "anonymous"]


class AuditRecord(BaseModel):
    """One administrative action, as published by the service that performed it (`audit.py`).

    Never a secret, an e-mail or a client address in clear: the actor is a member or key id, the client a keyed
    hash. rollup gives each record its per-workspace sequence number and hash-chain link when it stores it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    record_id: str  # a UUID made by the publisher: a redelivered record is chained once
    at: datetime
    workspace_id: str
    service: str
    actor_kind: AuditActorKind
    actor_id: str  # member id, key id, "operator" or "" for anonymous
    action: str  # an `access.Action`, or a people action such as "signin.password"
    target: str = ""  # what was acted on: a key id, member id, budget id, request id ...
    outcome: AuditOutcome
    request_id: str = ""
    client_hash: str = ""  # HMAC of the client address under a key derived from the KEK
    detail: dict[str, str] = Field(default_factory=dict)  # ids and codes only, never content
