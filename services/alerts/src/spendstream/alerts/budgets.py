"""Budgets: what a workspace spends per UTC month, the lines that warn, and where warnings go.

The compacted topic `alerts.budgets.v1` is the system of record (key: budget id, value: `BudgetRecord`, a
tombstone deletes). Every replica replays it into memory. Webhook signing secrets never travel in clear:
each is sealed with AES-256-GCM under the installation's KEK, bound by AAD to its workspace, budget and
webhook, so a record copied to another budget or workspace does not open, and no API answer after creation
carries it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

from faststream.kafka import KafkaBroker
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints, field_validator, model_validator

from spendstream.alerts.settings import AlertsSettings
from spendstream.common import crypto
from spendstream.common.kafka import CompactedTable, Publisher
from spendstream.common.records import BudgetRecord, BudgetScope, RedisDownPolicy, SealedWebhook
from spendstream.common.topics import BUDGETS

DEFAULT_THRESHOLDS = (75, 90, 100)
# Strict: what the schema calls a boolean or an integer is refused as 0, "true" or "5" (pydantic's lax mode
# would take them, and the API would accept what its own document calls invalid).
Threshold = Annotated[int, Field(ge=1, le=1000, strict=True)]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]{1,64}@[^@\s]{1,255}$", max_length=320)]
# A hard cap is compared inside a Redis Lua script, whose numbers are doubles: exact to 2^53 nano-dollars
# (9,007,199 USD). A hard budget stays well below, so committed + reserved + estimate <= cap is exact.
MAX_HARD_AMOUNT_USD = Decimal(1_000_000)
HARD_AMOUNT_MESSAGE = f"a hard budget's amount_usd is at most {MAX_HARD_AMOUNT_USD}"


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]{1,2000}$")]
    # Optional: a random one is generated (and shown once) when absent.
    secret: Annotated[str, StringConstraints(min_length=16, max_length=256)] | None = None


def _valid_thresholds(value: list[int] | None) -> list[int] | None:
    if value is None:
        return None
    if not value:
        raise ValueError("at least one threshold")
    return sorted(set(value))


class BudgetIn(BaseModel):
    """A new budget."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=120)]
    amount_usd: Annotated[Decimal, Field(gt=0, le=1_000_000_000, allow_inf_nan=False, decimal_places=9)]
    scope: BudgetScope | None = None
    thresholds: list[Threshold] = Field(default_factory=lambda: [*DEFAULT_THRESHOLDS], min_length=1, max_length=20)
    webhooks: list[WebhookIn] = Field(default_factory=list, max_length=10)
    emails: list[Email] = Field(default_factory=list, max_length=20)
    forecast: StrictBool = True
    spike_multiple: Annotated[Decimal, Field(gt=1, le=1000, allow_inf_nan=False)] | None = Decimal(3)
    hard: StrictBool = Field(
        default=False, description="calls must reserve (POST /v1/reservations) and are refused past the amount"
    )
    on_redis_unavailable: RedisDownPolicy = Field(
        default="deny",
        description="a hard budget's answer while its live state is unreachable: deny (fail closed) or allow",
    )

    _thresholds = field_validator("thresholds")(_valid_thresholds)

    @model_validator(mode="after")
    def _hard_amount(self) -> BudgetIn:
        if self.hard and self.amount_usd > MAX_HARD_AMOUNT_USD:
            raise ValueError(HARD_AMOUNT_MESSAGE)
        return self


class BudgetPatch(BaseModel):
    """A change: only the fields given are replaced. BudgetScope is fixed for a budget's life."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=120)] | None = None
    amount_usd: Annotated[Decimal, Field(gt=0, le=1_000_000_000, allow_inf_nan=False, decimal_places=9)] | None = None
    thresholds: list[Threshold] | None = Field(default=None, min_length=1, max_length=20)
    webhooks: list[WebhookIn] | None = Field(default=None, max_length=10)
    emails: list[Email] | None = Field(default=None, max_length=20)
    forecast: StrictBool | None = None
    spike_multiple: Annotated[Decimal, Field(gt=1, le=1000, allow_inf_nan=False)] | None = None
    spike_disabled: StrictBool = False
    hard: StrictBool | None = None
    on_redis_unavailable: RedisDownPolicy | None = None

    _thresholds = field_validator("thresholds")(_valid_thresholds)


class WebhookOut(BaseModel):
    webhook_id: str
    url: str
    secret: str | None = None  # only in the answer that created it


class BudgetState(BaseModel):
    """A hard budget's live state in the current period (UTC month), from one atomic read of Redis."""

    period: str = Field(description="YYYY-MM (UTC)")
    committed_usd: str = Field(description="spend of stored events counted this month")
    reserved_usd: str = Field(description="open reservations: allowed calls not yet settled, not yet expired")
    remaining_usd: str = Field(description="amount - committed - reserved (negative when real costs exceeded it)")


class BudgetOut(BaseModel):
    budget_id: str
    name: str
    amount_usd: str
    scope: BudgetScope | None
    thresholds: list[int]
    webhooks: list[WebhookOut]
    emails: list[str]
    forecast: bool
    spike_multiple: str | None
    hard: bool
    on_redis_unavailable: RedisDownPolicy
    state: BudgetState | None = Field(
        default=None,
        description="hard budgets, in GET answers; null for a soft budget, in the answers of POST and PATCH, and "
        "while Redis is unreachable",
    )
    revision: int
    created_at: datetime
    updated_at: datetime


def public_view(
    record: BudgetRecord, new_secrets: dict[str, str] | None = None, state: BudgetState | None = None
) -> BudgetOut:
    """What the API shows: never a secret, except those generated or set by the request that answers."""
    shown = new_secrets or {}
    return BudgetOut(
        budget_id=record.budget_id,
        name=record.name,
        amount_usd=format(record.amount_usd, "f"),
        scope=record.scope,
        thresholds=list(record.thresholds),
        webhooks=[
            WebhookOut(webhook_id=w.webhook_id, url=w.url, secret=shown.get(w.webhook_id)) for w in record.webhooks
        ],
        emails=list(record.emails),
        forecast=record.forecast,
        spike_multiple=format(record.spike_multiple, "f") if record.spike_multiple is not None else None,
        hard=record.hard,
        on_redis_unavailable=record.on_redis_unavailable,
        state=state,
        revision=record.revision,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


class SecretBox:
    """Seals and opens webhook secrets with the KEK."""

    def __init__(self, kek: bytes, kek_id: str) -> None:
        self._kek = kek
        self._kek_id = kek_id

    @staticmethod
    def _aad(kek_id: str, workspace_id: str, budget_id: str, webhook_id: str) -> bytes:
        return f"alerts.webhook|{kek_id}|{workspace_id}|{budget_id}|{webhook_id}".encode()

    def seal(self, workspace_id: str, budget_id: str, webhook_id: str, url: str, secret: str) -> SealedWebhook:
        sealed = crypto.encrypt(
            self._kek, secret.encode(), self._aad(self._kek_id, workspace_id, budget_id, webhook_id)
        )
        return SealedWebhook(webhook_id=webhook_id, url=url, kek_id=self._kek_id, sealed_secret=sealed)

    def open(self, record: BudgetRecord, webhook: SealedWebhook) -> bytes:
        return crypto.decrypt(
            self._kek,
            webhook.sealed_secret,
            self._aad(webhook.kek_id, record.workspace_id, record.budget_id, webhook.webhook_id),
        )


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


class BudgetBook:
    """The replayed budget table plus the writes to it. Writes return once the broker acknowledged them."""

    def __init__(
        self,
        settings: AlertsSettings,
        broker: KafkaBroker,
        on_change: Callable[[str, BudgetRecord | None], None] | None = None,
    ) -> None:
        self.box = SecretBox(settings.kek_bytes(), settings.kek_identity())
        self._listener = on_change
        # Budgets by workspace, kept in step with the table: the consumer looks them up per Kafka batch.
        self._by_workspace: dict[str, dict[str, BudgetRecord]] = {}
        self._workspace_of: dict[str, str] = {}
        self.table: CompactedTable[BudgetRecord] = CompactedTable(settings, BUDGETS, on_change=self._changed)
        self._records = Publisher(broker, BUDGETS, settings.topic_prefix)

    def _changed(self, budget_id: str, record: BudgetRecord | None) -> None:
        old_ws = self._workspace_of.pop(budget_id, None)
        if old_ws is not None:
            self._by_workspace.get(old_ws, {}).pop(budget_id, None)
            if not self._by_workspace.get(old_ws):
                self._by_workspace.pop(old_ws, None)
        if record is not None:
            self._workspace_of[budget_id] = record.workspace_id
            self._by_workspace.setdefault(record.workspace_id, {})[budget_id] = record
        if self._listener is not None:
            self._listener(budget_id, record)

    def get(self, workspace_id: str, budget_id: str) -> BudgetRecord | None:
        record = self.table.get(budget_id)
        return record if record is not None and record.workspace_id == workspace_id else None

    def of_workspace(self, workspace_id: str) -> list[BudgetRecord]:
        return sorted(self._by_workspace.get(workspace_id, {}).values(), key=lambda b: b.created_at)

    def all(self) -> list[BudgetRecord]:
        return self.table.values()

    async def put(self, record: BudgetRecord) -> None:
        await self._records.publish(record, record.budget_id)
        await self.table.catch_up()

    async def delete(self, budget_id: str) -> None:
        # A tombstone: compaction removes every earlier version of the record.
        await self._records.tombstone(budget_id)
        await self.table.catch_up()

    def _webhooks(
        self, workspace_id: str, budget_id: str, wanted: list[WebhookIn], existing: tuple[SealedWebhook, ...]
    ) -> tuple[tuple[SealedWebhook, ...], dict[str, str]]:
        """Seal new webhooks; one whose URL is kept without a new secret keeps its sealed secret."""
        by_url = {w.url: w for w in existing}
        sealed: list[SealedWebhook] = []
        shown: dict[str, str] = {}
        for hook in wanted:
            old = by_url.get(hook.url)
            if old is not None and hook.secret is None:
                sealed.append(old)
                continue
            webhook_id = old.webhook_id if old is not None else new_id("wh")
            secret = hook.secret or secrets.token_urlsafe(32)
            sealed.append(self.box.seal(workspace_id, budget_id, webhook_id, hook.url, secret))
            shown[webhook_id] = secret
        return tuple(sealed), shown

    def new_record(self, workspace_id: str, body: BudgetIn) -> tuple[BudgetRecord, dict[str, str]]:
        budget_id = new_id("bud")
        hooks, shown = self._webhooks(workspace_id, budget_id, body.webhooks, ())
        now = datetime.now(UTC)
        record = BudgetRecord(
            budget_id=budget_id,
            workspace_id=workspace_id,
            name=body.name,
            amount_usd=body.amount_usd,
            scope=body.scope,
            thresholds=tuple(body.thresholds),
            webhooks=hooks,
            emails=tuple(body.emails),
            forecast=body.forecast,
            spike_multiple=body.spike_multiple,
            hard=body.hard,
            on_redis_unavailable=body.on_redis_unavailable,
            revision=1,
            created_at=now,
            updated_at=now,
        )
        return record, shown

    def changed_record(self, record: BudgetRecord, patch: BudgetPatch) -> tuple[BudgetRecord, dict[str, str]]:
        update: dict[str, object] = {"revision": record.revision + 1, "updated_at": datetime.now(UTC)}
        shown: dict[str, str] = {}
        if patch.webhooks is not None:
            update["webhooks"], shown = self._webhooks(
                record.workspace_id, record.budget_id, patch.webhooks, record.webhooks
            )
        for name in ("name", "amount_usd", "forecast", "spike_multiple", "hard", "on_redis_unavailable"):
            value = getattr(patch, name)
            if value is not None:
                update[name] = value
        if patch.spike_disabled:
            update["spike_multiple"] = None
        if patch.thresholds is not None:
            update["thresholds"] = tuple(patch.thresholds)
        if patch.emails is not None:
            update["emails"] = tuple(patch.emails)
        return record.model_copy(update=update), shown
