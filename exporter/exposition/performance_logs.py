"""The performance-log collector: the duration histogram and the write queue."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from exporter.domain.performance_log import DURATION_BUCKETS, DurationHistogram


class QueueStats(Protocol):
    """What a group-commit writer tells about its queue."""

    queued_units: int
    queued_bytes: int
    waiting: int
    batches: int


class PerformanceLogCollector:
    """The duration histogram of committed records and the state of the write queue."""

    def __init__(self, histogram: DurationHistogram, writer: QueueStats) -> None:
        self.histogram = histogram
        self.writer = writer

    def collect(self) -> Iterator[Metric]:
        """Families rebuilt from the current counts."""
        family = HistogramMetricFamily(
            "monitoring_operation_duration_seconds",
            "Durations of the operations recorded as performance logs (committed records).",
            labels=["operation_type", "status"],
        )
        bounds = [str(b) for b in DURATION_BUCKETS] + ["+Inf"]
        for op, status, cumulative, total in self.histogram.snapshot():
            family.add_metric([op, status], list(zip(bounds, cumulative, strict=True)), total)
        yield family
        queue = GaugeMetricFamily(
            "monitoring_performance_log_queue",
            "Performance-log records accepted and not yet committed.",
            labels=["unit"],
        )
        queue.add_metric(["rows"], self.writer.queued_units)
        queue.add_metric(["bytes"], self.writer.queued_bytes)
        queue.add_metric(["requests"], self.writer.waiting)
        yield queue
        yield CounterMetricFamily(
            "monitoring_performance_log_batches",
            "Shared batches (group commits) written to PostgreSQL.",
            value=self.writer.batches,
        )
