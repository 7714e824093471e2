"""The ``performance_logs`` and ``retention`` sections."""

from __future__ import annotations

import msgspec

from exporter.config.section import Section
from exporter.config.types import Duration


class PerformanceLogs(Section, frozen=True):
    """The performance-log ingest: group commit and backpressure bounds."""

    batch_max_rows: int = 5000
    batch_max_delay: Duration = msgspec.field(default_factory=lambda: Duration(0.002))
    queue_max_rows: int = 200_000
    # estimated memory of queued records: body bytes plus ~400 bytes of objects per row
    queue_max_bytes: int = 128 << 20
    max_records_per_request: int = 100_000
    max_request_details_bytes: int = 64 << 10
    # batches written at the same time (each on its own pooled connection)
    max_concurrent_batches: int = 2
    # label sets of monitoring_operation_duration_seconds; further operation types are
    # counted under operation_type="other"
    max_histogram_series: int = 500
    self_instrument: bool = False
    #: OTLP (POST /v1/traces): characters kept of one string attribute value
    otlp_max_attribute_length: int = 1024
    #: OTLP: attributes kept per span (the rest are dropped and counted)
    otlp_max_attributes: int = 128

    def __post_init__(self) -> None:
        for name in (
            "batch_max_rows",
            "queue_max_rows",
            "queue_max_bytes",
            "max_records_per_request",
            "max_concurrent_batches",
            "otlp_max_attributes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1")
        if self.otlp_max_attribute_length < 16:
            raise ValueError("otlp_max_attribute_length: must be at least 16")
        if self.max_histogram_series < 4:
            raise ValueError("max_histogram_series: must be at least 4")
        if self.queue_max_rows < self.batch_max_rows:
            raise ValueError("queue_max_rows: must be at least batch_max_rows")


class Retention(Section, frozen=True):
    """How long rows are kept; removal runs in the background."""

    health_metrics: Duration = msgspec.field(default_factory=lambda: Duration(30 * 86400))
    quality_indicators: Duration = msgspec.field(default_factory=lambda: Duration(90 * 86400))
    resolved_alerts: Duration = msgspec.field(default_factory=lambda: Duration(180 * 86400))
    performance_logs: Duration = msgspec.field(default_factory=lambda: Duration(14 * 86400))
    #: hourly rollups of performance logs (counts, sums, latency sketches: what the summary,
    #: the histogram and the dashboards read), kept long after the raw records
    performance_log_rollups: Duration = msgspec.field(default_factory=lambda: Duration(400 * 86400))
    #: per-minute rollups; older windows are summarised in whole hours
    performance_log_minute_rollups: Duration = msgspec.field(
        default_factory=lambda: Duration(35 * 86400)
    )
    interval: Duration = msgspec.field(default_factory=lambda: Duration(3600))
    #: how long the outcome of a write sent with an Idempotency-Key is kept (at least 24h)
    idempotency_keys: Duration = msgspec.field(default_factory=lambda: Duration(86400))
    #: the most keys kept: past it the oldest go first, even before their time is up
    idempotency_max_keys: int = 1_000_000
    #: changes the stream can replay (a client resuming from an older cursor starts over);
    #: at least an hour
    change_log: Duration = msgspec.field(default_factory=lambda: Duration(86400))

    def __post_init__(self) -> None:
        if self.idempotency_keys.seconds < 86400:
            raise ValueError("idempotency_keys: must be at least 24h")
        if self.idempotency_max_keys < 10_000:
            raise ValueError("idempotency_max_keys: must be at least 10000")
        if self.change_log.seconds < 3600:
            raise ValueError("change_log: must be at least 1h")
