"""Stripe as a revenue source: a webhook endpoint per workspace, authenticated by Stripe's signature alone.

The endpoint's signing secret is set by an admin and stored sealed with the workspace's data key (AES-256-GCM,
AAD = rollup.stripe|workspace|version): a workspace erasure shreds the key, and the row goes with the workspace.
Every request is verified with the official package (`stripe.Webhook.construct_event`: HMAC-SHA256 over
`{t}.{payload}`, the timestamp within the tolerance) before anything is read; a refused request stores nothing.

Only the fields named here are read from an event, nothing else of the payload is kept, logged or published
(e-mails, names, addresses and card details pass through memory only):
  * `invoice.paid`: id, amount_paid, currency, lines.data[].period (start, end), metadata / customer_metadata
    [the workspace's metadata key] -> a record `stripe`/<invoice id>; its period runs from the earliest line
    start to the day before the latest line end (Stripe's ends are exclusive).
  * `charge.refunded`: id, amount_refunded (cumulative, so the record `stripe`/<charge id>:refunded is replaced
    by each further refund), currency, invoice, metadata -> a negative record.
  * `refund.created`: id, amount, currency, metadata -> a negative record `stripe`/<refund id> (enable it or
    `charge.refunded`, not both: each would count the same refund).
  * `credit_note.created`: id, total, currency, invoice, metadata -> a negative record `stripe`/<credit note id>.
A refund or credit note takes the customer and period of the invoice it names when that invoice is stored,
else its own metadata and the month of the event. An event whose customer maps to no customer_id, or that was
created before its customer's erasure, is answered 200 and ignored (Stripe would retry an error for days).
Event ids already applied are answered 200 and not applied again.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import stripe
from clickhouse_connect.driver.client import Client
from cryptography.exceptions import InvalidTag
from pydantic import ValidationError

from spendstream.common import crypto
from spendstream.common.tenants import KeyRing
from spendstream.rollup.erased import ErasedSubjects
from spendstream.rollup.revenue import RevenueRecord, RevenueStore

log = logging.getLogger(__name__)
SOURCE = "stripe"
# Stripe's minor units: https://docs.stripe.com/currencies#zero-decimal and #three-decimal
ZERO_DECIMAL = frozenset(
    "BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split()  # noqa: SIM905 (a list to read)
)
THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())  # noqa: SIM905
HANDLED = ("invoice.paid", "charge.refunded", "refund.created", "credit_note.created")


def from_minor(units: int, currency: str) -> Decimal:
    """An amount in the currency's minor units as a decimal of its major unit."""
    exponent = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    return Decimal(units).scaleb(-exponent)


def _aad(workspace_id: str, version: int) -> bytes:
    return f"rollup.stripe|{workspace_id}|{version}".encode()


@dataclass(frozen=True)
class Endpoint:
    secret: str
    customer_metadata_key: str


class StripeEndpoints:
    """The sealed signing secret and metadata key of each workspace's endpoint (table stripe_endpoints)."""

    def __init__(self, client: Client, database: str, keyring: KeyRing) -> None:
        self._client = client
        self.db = database
        self._keyring = keyring

    async def set(self, workspace_id: str, secret: str, customer_metadata_key: str) -> bool:
        """Seal and store; False when the workspace has no data key (erased, or unknown)."""
        version = self._keyring.current_version(workspace_id)
        if version is None:
            await self._keyring.table.catch_up()
            version = self._keyring.current_version(workspace_id)
        key = await self._keyring.data_key(workspace_id, version) if version is not None else None
        if key is None or version is None:
            return False
        sealed = base64.b64encode(crypto.encrypt(key, secret.encode(), _aad(workspace_id, version))).decode()
        await asyncio.to_thread(
            self._client.insert,
            f"{self.db}.stripe_endpoints",
            [(workspace_id, version, sealed, customer_metadata_key, time.time_ns())],
            column_names=("workspace_id", "key_version", "sealed_secret", "customer_metadata_key", "version"),
        )
        return True

    async def get(self, workspace_id: str) -> Endpoint | None:
        """The endpoint, or None when none is set or its data key is gone (shredded: the secret is unreadable)."""
        rows = await asyncio.to_thread(
            lambda: (
                self._client.query(
                    f"SELECT key_version, sealed_secret, customer_metadata_key FROM {self.db}.stripe_endpoints FINAL "
                    "WHERE workspace_id = {ws:String}",
                    parameters={"ws": workspace_id},
                ).result_rows
            )
        )
        if not rows:
            return None
        version, sealed, metadata_key = int(rows[0][0]), str(rows[0][1]), str(rows[0][2])
        key = await self._keyring.data_key(workspace_id, version)
        if key is None:
            return None
        try:
            secret = crypto.decrypt(key, base64.b64decode(sealed), _aad(workspace_id, version)).decode()
        except InvalidTag:
            return None
        if version != self._keyring.current_version(workspace_id):
            # Re-sealed under the current version: a retired version's key is removed after a while.
            await self.set(workspace_id, secret, metadata_key)
        return Endpoint(secret, metadata_key)


class Refused(Exception):
    """The request is not a verifiable Stripe event: nothing is stored."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def _get(node: Any, *path: str) -> Any:
    for name in path:
        if node is None:
            return None
        try:
            node = node[name]
        except (KeyError, TypeError):
            return None
    return node


def _day(timestamp: int) -> date:
    return datetime.fromtimestamp(timestamp, UTC).date()


_NOT_VERIFIED = "the Stripe-Signature header does not verify with this workspace's endpoint secret"


class StripeWebhook:
    """Verifies a Stripe request and turns the events named above into revenue records."""

    def __init__(
        self,
        endpoints: StripeEndpoints,
        store: RevenueStore,
        client: Client,
        database: str,
        lock: asyncio.Lock,
        tolerance_seconds: int = 300,
        erased: ErasedSubjects | None = None,
    ) -> None:
        self._erased = erased
        self._endpoints = endpoints
        self._store = store
        self._client = client
        self.db = database
        self._lock = lock
        self._tolerance = tolerance_seconds

    async def receive(self, workspace_id: str, payload: bytes, signature: str | None) -> dict[str, Any]:
        # The signature is the request's credential: no endpoint, no signature or a bad one are the same 401, so
        # an unauthenticated caller learns nothing of which workspaces have Stripe set up.
        endpoint = await self._endpoints.get(workspace_id)
        if endpoint is None:
            raise Refused(401, "invalid_signature", _NOT_VERIFIED)
        try:
            event = stripe.Webhook.construct_event(payload, signature, endpoint.secret, tolerance=self._tolerance)
        except stripe.SignatureVerificationError:
            # The exception carries the header and payload: never logged, never echoed.
            raise Refused(401, "invalid_signature", _NOT_VERIFIED) from None
        except (ValueError, TypeError, AttributeError, KeyError):  # signed, but not a JSON object of an event
            raise Refused(400, "invalid_body", "the body is not a JSON Stripe event") from None
        event_id, kind = str(_get(event, "id") or ""), str(_get(event, "type") or "")
        if not event_id:
            raise Refused(400, "invalid_body", "the event has no id")
        if kind not in HANDLED:
            return {"status": "ignored", "reason": "event_type_not_handled"}
        async with self._lock:
            if await asyncio.to_thread(self._seen, workspace_id, event_id):
                return {"status": "duplicate"}
            try:
                record = await asyncio.to_thread(
                    self._record, workspace_id, kind, event, endpoint.customer_metadata_key
                )
            except (ValidationError, TypeError, ValueError, ArithmeticError):
                log.warning("stripe event not usable", extra={"workspace_id": workspace_id, "event_id": event_id})
                return {"status": "ignored", "reason": "fields_missing_or_invalid"}
            if record is None:
                log.info("stripe event unmapped", extra={"workspace_id": workspace_id, "event_id": event_id})
                return {"status": "ignored", "reason": "customer_not_mapped"}
            created = datetime.fromtimestamp(int(_get(event, "created") or 0), UTC)
            if self._erased is not None and self._erased.erased_since(workspace_id, record.customer_id, created):
                # An event made before the customer's erasure (Stripe retries for days) does not bring it back.
                log.info(
                    "stripe event of an erased customer", extra={"workspace_id": workspace_id, "event_id": event_id}
                )
                return {"status": "ignored", "reason": "customer_erased"}
            await asyncio.to_thread(self._store.write, workspace_id, [record])
            await asyncio.to_thread(self._mark, workspace_id, event_id)
        log.info("stripe revenue recorded", extra={"workspace_id": workspace_id, "event_id": event_id, "type": kind})
        return {"status": "recorded", "source": SOURCE, "source_id": record.source_id}

    def _seen(self, workspace_id: str, event_id: str) -> bool:
        rows = self._client.query(
            f"SELECT count() FROM {self.db}.stripe_events "
            "WHERE workspace_id = {ws:String} AND event_id = {id:String}",
            parameters={"ws": workspace_id, "id": event_id},
        ).result_rows
        return bool(rows[0][0])

    def _mark(self, workspace_id: str, event_id: str) -> None:
        self._client.insert(
            f"{self.db}.stripe_events", [(workspace_id, event_id)], column_names=("workspace_id", "event_id")
        )

    def _record(self, workspace_id: str, kind: str, event: Any, metadata_key: str) -> RevenueRecord | None:
        obj = _get(event, "data", "object")
        currency = str(_get(obj, "currency") or "").upper()
        customer = _get(obj, "metadata", metadata_key) or _get(obj, "customer_metadata", metadata_key)
        if kind == "invoice.paid":
            lines = _get(obj, "lines", "data") or []
            starts = [int(_get(line, "period", "start")) for line in lines if _get(line, "period", "start") is not None]
            ends = [int(_get(line, "period", "end")) for line in lines if _get(line, "period", "end") is not None]
            if not starts or not ends or customer is None:
                return None if customer is None else self._invalid()
            start = _day(min(starts))
            end = max(start, _day(max(ends)) - timedelta(days=1) if max(ends) > min(starts) else start)
            return RevenueRecord(
                source=SOURCE,
                source_id=str(_get(obj, "id")),
                customer_id=str(customer),
                amount=from_minor(int(_get(obj, "amount_paid")), currency),
                currency=currency,
                period_start=start,
                period_end=end,
            )
        if kind == "charge.refunded":
            source_id, units = f"{_get(obj, 'id')}:refunded", int(_get(obj, "amount_refunded"))
        elif kind == "refund.created":
            source_id, units = str(_get(obj, "id")), int(_get(obj, "amount"))
        else:  # credit_note.created
            source_id, units = str(_get(obj, "id")), int(_get(obj, "total"))
        invoice = _get(obj, "invoice")
        paid = self._store.find(workspace_id, SOURCE, str(invoice)) if isinstance(invoice, str) else None
        if paid is not None:
            customer = customer or paid["customer_id"]
            start, end = paid["period_start"], paid["period_end"]
        else:
            start = end = _day(int(_get(event, "created")))
            start, end = start.replace(day=1), start
        if customer is None:
            return None
        return RevenueRecord(
            source=SOURCE,
            source_id=source_id,
            customer_id=str(customer),
            amount=-from_minor(units, currency),
            currency=currency,
            period_start=start,
            period_end=end,
        )

    @staticmethod
    def _invalid() -> RevenueRecord:
        raise ValueError("an invoice without line periods")
