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
    queue_max_bytes: int = 128 << 20
    max_records_per_request: int = 100_000
    max_request_details_bytes: int = 64 << 10
    self_instrument: bool = False


class Retention(Section, frozen=True):
    """How long rows are kept; removal runs in the background."""

    health_metrics: Duration = msgspec.field(default_factory=lambda: Duration(30 * 86400))
    quality_indicators: Duration = msgspec.field(default_factory=lambda: Duration(90 * 86400))
    resolved_alerts: Duration = msgspec.field(default_factory=lambda: Duration(180 * 86400))
    performance_logs: Duration = msgspec.field(default_factory=lambda: Duration(14 * 86400))
    interval: Duration = msgspec.field(default_factory=lambda: Duration(3600))
