"""retention's Prometheus metrics. Labels are states, owners and scopes, never ids or customer values."""

from prometheus_client import Counter, Histogram

FINISHED = Counter(
    "spendstream_retention_deletions_total", "Deletion requests finished, by scope and state", ["scope", "state"]
)
SECONDS_TO_FINISH = Histogram(
    "spendstream_retention_deletion_seconds",
    "From request to verified/failed (by the service clock)",
    buckets=(1, 5, 15, 30, 60, 120, 300, 900, 3600, 86400),
)
COMMANDS = Counter("spendstream_retention_commands_total", "Deletion commands sent (re-sends included)")
REPORTS = Counter(
    "spendstream_retention_reports_total", "Owner reports recorded, by owner and status", ["owner", "status"]
)
