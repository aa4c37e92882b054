"""alerts' Prometheus metrics. Labels are kinds and outcomes only: never a workspace, URL or address."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from spendstream.common.key_backoff import KEY_UNAVAILABLE as KEY_UNAVAILABLE  # shared: one name, `consumer` label

RECORDS_COUNTED = Counter(
    "spendstream_alerts_records_counted_total", "usage.events.v1 records added to spend (first time seen)"
)
RECORDS_SKIPPED = Counter(
    "spendstream_alerts_records_already_counted_total",
    "usage.events.v1 records skipped because their offset was already counted",
)
RECORDS_UNREADABLE = Counter(
    "spendstream_alerts_records_unreadable_total",
    "records that could not be decrypted (rollup dead-letters them)",
    ["reason"],
)
ALERTS_FIRED = Counter("spendstream_alerts_fired_total", "alerts published to alerts.fired.v1", ["kind"])
DELIVERIES = Counter("spendstream_alerts_deliveries_total", "delivery outcomes", ["channel", "status"])
DELIVERY_ATTEMPTS = Counter("spendstream_alerts_delivery_attempts_total", "delivery attempts", ["channel"])
INGEST_TO_FIRED_SECONDS = Histogram(
    "spendstream_alerts_ingest_to_fired_seconds",
    "from ingest's acceptance of a batch to the alert it caused being published",
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
RECONCILE_RAISED = Counter(
    "spendstream_alerts_reconcile_raised_total", "counters lifted to rollup's figure by reconciliation"
)
RECONCILE_FAILURES = Counter("spendstream_alerts_reconcile_failures_total", "failed reconciliation calls")
RESERVATIONS = Counter(
    "spendstream_alerts_reservations_total",
    "POST /v1/reservations answers: reserved, denied (a hard budget's amount), no_hard_budget, "
    "unavailable_denied / unavailable_allowed (Redis unreachable, per the budgets' policy)",
    ["outcome"],
)
RESERVATION_DENIALS = Counter(
    "spendstream_alerts_reservation_denials_total",
    "reservations refused: budget_exceeded (402) or budget_state_unavailable (503)",
    ["reason"],
)
RESERVATIONS_RELEASED = Counter(
    "spendstream_alerts_reservations_released_total",
    "open reservations released: deleted (DELETE /v1/reservations/{id}) or settled (a usage event carried the id)",
    ["how"],
)
