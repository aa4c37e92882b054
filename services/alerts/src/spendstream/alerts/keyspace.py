"""Every Redis key alerts writes, built with the shared layout `<prefix>alerts:<kind>:{<workspace>}:...`.

All keys of a workspace share its hash tag, so the Lua scripts that touch several of them stay on one Redis
Cluster slot, and erasure finds them all with one pattern. Tag values (a customer id, a feature) never appear in
a key: they are replaced by a keyed hash, so Redis holds no customer identifier and erasure can still name
exactly that customer's keys.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

from spendstream.common.redis_keys import tenant_key

SERVICE = "alerts"
ALL = "all"


class KeySpace:
    def __init__(self, prefix: str, kek: bytes) -> None:
        self.prefix = prefix
        self._hash_key = hmac.new(kek, b"spendstream.alerts.tag-hash", hashlib.sha256).digest()

    def scope(self, workspace_id: str, tag: str | None, value: str | None) -> str:
        """`all`, or `<tag>:<keyed hash of the value>`."""
        if tag is None or value is None:
            return ALL
        digest = hmac.new(self._hash_key, f"{workspace_id}|{tag}|{value}".encode(), hashlib.sha256).hexdigest()
        return f"{tag}:{digest[:32]}"

    def month_spend(self, workspace_id: str, month: str, scope: str) -> str:
        return tenant_key(self.prefix, SERVICE, "spend", workspace_id, month, scope)

    def day_spend(self, workspace_id: str, day: date, scope: str) -> str:
        return tenant_key(self.prefix, SERVICE, "spendday", workspace_id, day.isoformat(), scope)

    def counted_offset(self, workspace_id: str, topic: str, partition: int) -> str:
        return tenant_key(self.prefix, SERVICE, "offset", workspace_id, topic, str(partition))

    def marker(self, workspace_id: str, budget_id: str, period: str, name: str) -> str:
        """One key per (budget, period, threshold or alert kind): one threshold can never silence another."""
        return tenant_key(self.prefix, SERVICE, "fired", workspace_id, budget_id, period, name)

    def revision(self, workspace_id: str, budget_id: str) -> str:
        return tenant_key(self.prefix, SERVICE, "revision", workspace_id, budget_id)

    def delivery_log(self, workspace_id: str, budget_id: str, alert_id: str) -> str:
        return tenant_key(self.prefix, SERVICE, "delivery", workspace_id, budget_id, alert_id)

    def delivery_index(self, workspace_id: str, budget_id: str) -> str:
        return tenant_key(self.prefix, SERVICE, "deliveries", workspace_id, budget_id)

    def delivery_lock(self, workspace_id: str, alert_id: str, channel: str) -> str:
        return tenant_key(self.prefix, SERVICE, "sending", workspace_id, alert_id, channel)

    def reservation(self, workspace_id: str, reservation_id: str) -> str:
        """One reservation: its amount and the hard budgets it holds (reservations.py)."""
        return tenant_key(self.prefix, SERVICE, "reservation", workspace_id, reservation_id)

    def open_reservations(self, workspace_id: str, budget_id: str) -> str:
        """A hard budget's open reservations: a sorted set of `<id>:<nanos>` scored by expiry (unix ms)."""
        return tenant_key(self.prefix, SERVICE, "held", workspace_id, budget_id)

    def reserved_total(self, workspace_id: str, budget_id: str) -> str:
        """The sum of the amounts in open_reservations, kept by the same scripts that change the set."""
        return tenant_key(self.prefix, SERVICE, "heldsum", workspace_id, budget_id)

    def workspace_pattern(self, workspace_id: str) -> str:
        """SCAN pattern of every alerts key of the workspace (and of no other service)."""
        return f"{self.prefix}{SERVICE}:*:{{{_glob_escape(workspace_id)}}}*"

    def budget_pattern(self, workspace_id: str, budget_id: str) -> str:
        return f"{self.prefix}{SERVICE}:*:{{{_glob_escape(workspace_id)}}}:{_glob_escape(budget_id)}*"

    def scope_pattern(self, workspace_id: str, scope: str) -> str:
        return f"{self.prefix}{SERVICE}:spend*:{{{_glob_escape(workspace_id)}}}:*:{_glob_escape(scope)}"


def _glob_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]").replace("*", "\\*").replace("?", "\\?")
