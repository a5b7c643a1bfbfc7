"""What every Rekey process counts and times, for Prometheus (``/metrics`` on the health port).

One process runs one service in production; tests run several in one process, so metrics
that several services share carry a ``service`` label. deploy/README.md ("Read the metrics")
says what each one means and which alert reads it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

# Request/reply endpoints on the bus (services) and HTTP routes (portal).
REQUEST_SECONDS = Histogram(
    "rekey_request_seconds", "Time to answer one request, by service and endpoint",
    ["service", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
REQUEST_ERRORS = Counter(
    "rekey_request_errors_total",
    "Requests answered with an error, by service, endpoint and error code "
    "(internal: a fault; deadline_exceeded: no one was waiting any more)",
    ["service", "endpoint", "code"],
)
# The outbox relay and the consumers.
RELAY_LAG = Gauge("rekey_relay_lag_events", "Stored events not yet on the stream", ["service"])
RELAY_PUBLISHED = Counter("rekey_relay_published_total", "Events the relay put on the stream",
                          ["service"])
CONSUMER_PENDING = Gauge("rekey_consumer_pending_events",
                         "Events on the stream this service has not received yet", ["service"])
CONSUMER_UNACKED = Gauge("rekey_consumer_unacked_events",
                         "Events received and not yet acknowledged", ["service"])
CONSUMER_HANDLED = Counter("rekey_consumer_handled_total", "Upstream events handled",
                           ["service"])
CONSUMER_REDELIVERIES = Counter(
    "rekey_consumer_redeliveries_total",
    "Upstream events delivered again (a handler failed, or an ack came too late)", ["service"],
)
CONSUMER_FAILURES = Counter("rekey_consumer_failures_total",
                            "Upstream events whose handler failed (each is redelivered)",
                            ["service"])
LOOP_PROGRESS = Gauge(
    "rekey_loop_progress_timestamp_seconds",
    "When a background loop (relay, consumer) last completed a step (Unix time)",
    ["service", "loop"],
)
NATS_CONNECTED = Gauge("rekey_nats_connected", "1 while the process is connected to NATS",
                       ["identity"])
NATS_RECONNECTS = Counter("rekey_nats_reconnects_total", "Times the NATS connection came back",
                          ["identity"])
# Work that costs: password hashing, and what leaves the system.
ARGON2_SECONDS = Histogram(
    "rekey_argon2_seconds", "Time of one argon2id hash or verify", ["operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
MAILS_SENT = Counter("rekey_mails_sent_total", "Mails the mail server accepted")
MAILS_FAILED = Counter("rekey_mails_failed_total",
                       "Mails given up after every retry (the outcome is recorded as failed)")
TEXTS_SENT = Counter("rekey_texts_sent_total", "Texts and calls the provider accepted", ["channel"])
TEXTS_FAILED = Counter("rekey_texts_failed_total",
                       "Texts and calls given up after every retry", ["channel"])
TREE_HEAD_TIME = Gauge(
    "rekey_tree_head_timestamp_seconds",
    "When the service last signed and published a tree head of its store (Unix time); "
    "time() minus this is the tree head's age", ["service"],
)
STREAM_MESSAGES_ERASED = Counter(
    "rekey_stream_messages_erased_total",
    "Messages of erased users the audit service deleted from the event stream",
)
TREE_HEADS_REFUSED = Counter(
    "rekey_tree_heads_refused_total",
    "Tree heads the audit service refused as they arrived (bad signature, not consistent with "
    "the previous head from the same service, not a head)", ["service"],
)
TREE_HEAD_RECEIVED = Gauge(
    "rekey_tree_head_received_timestamp_seconds",
    "When the last head the audit service accepted from the service was signed (Unix time); "
    "time() minus this is the age of the newest head the second witness holds", ["service"],
)
IDEMPOTENT_REPLAYS = Counter(
    "rekey_idempotent_replays_total",
    "Retried commands answered with the first result instead of doing the work again",
    ["service", "command"],
)

METRIC_NAMES = (
    "rekey_request_seconds", "rekey_request_errors_total", "rekey_relay_lag_events",
    "rekey_relay_published_total", "rekey_consumer_pending_events",
    "rekey_consumer_unacked_events", "rekey_consumer_handled_total",
    "rekey_consumer_redeliveries_total", "rekey_consumer_failures_total",
    "rekey_loop_progress_timestamp_seconds", "rekey_nats_connected",
    "rekey_nats_reconnects_total", "rekey_argon2_seconds", "rekey_mails_sent_total",
    "rekey_mails_failed_total", "rekey_texts_sent_total", "rekey_texts_failed_total",
    "rekey_idempotent_replays_total", "rekey_tree_head_timestamp_seconds",
    "rekey_stream_messages_erased_total", "rekey_tree_heads_refused_total",
    "rekey_tree_head_received_timestamp_seconds",
)


@contextmanager
def timed(histogram: Histogram, **labels: str) -> Iterator[None]:
    """Observe the block's duration (monotonic clock), failed or not."""
    started = time.perf_counter()
    try:
        yield
    finally:
        (histogram.labels(**labels) if labels else histogram).observe(time.perf_counter() - started)
