"""ingest's Prometheus metrics. Labels are reason codes and outcomes, never values from a payload."""

from prometheus_client import Counter, Histogram

from spendstream.common.key_backoff import KEY_UNAVAILABLE as KEY_UNAVAILABLE  # shared: one name, `consumer` label

EVENTS_ACCEPTED = Counter("spendstream_ingest_events_accepted_total", "Events accepted and published", ["source"])
EVENTS_DUPLICATE = Counter("spendstream_ingest_events_duplicate_total", "Events dropped as repeated event_id")
EVENTS_REFUSED = Counter("spendstream_ingest_events_refused_total", "Events refused, by reason code", ["code"])
REQUESTS = Counter("spendstream_ingest_requests_total", "HTTP ingest requests by status", ["status"])
PUBLISH_SECONDS = Histogram(
    "spendstream_ingest_publish_seconds",
    "Time for Kafka to acknowledge one batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_EVENTS = Histogram(
    "spendstream_ingest_batch_events", "Events per published batch", buckets=(1, 10, 50, 100, 250, 500)
)
OTLP_SPANS = Counter(
    "spendstream_ingest_otlp_spans_total",
    "Spans received on /v1/traces, by outcome (accepted, duplicate, refused, ignored: not a GenAI usage record)",
    ["outcome"],
)
LIMITED = Counter("spendstream_ingest_limited_total", "Requests refused by a limit, by reason code", ["code"])
LIMITER_UNAVAILABLE = Counter(
    "spendstream_ingest_limiter_unavailable_total", "Limit checks done without Redis (failed open), by limit", ["limit"]
)
INTAKE_RECORDS = Counter(
    "spendstream_ingest_intake_records_total", "Records read from the raw Kafka intake, by outcome", ["outcome"]
)
ERASURES = Counter(
    "spendstream_ingest_erasures_total", "Deletion commands carried out, by scope and status", ["scope", "status"]
)
