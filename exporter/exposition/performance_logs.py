"""The performance-log collector: the duration histogram (with a trace id per bucket as its
OpenMetrics exemplar) and the write queue."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Exemplar

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
        exemplars = self.histogram.exemplars
        for op, status, cumulative, total in self.histogram.snapshot():
            buckets: list[Any] = []
            marked = exemplars.get((op, status)) or [None] * len(bounds)
            for bound, count, found in zip(bounds, cumulative, marked, strict=True):
                if found is None:
                    buckets.append((bound, count))
                else:
                    # OpenMetrics only (text 0.0.4 has no exemplars): the trace behind the bucket
                    exemplar = Exemplar({"trace_id": found.trace_id}, found.seconds,
                                        found.at.timestamp())  # fmt: skip
                    buckets.append((bound, count, exemplar))
            family.add_metric([op, status], buckets, total)
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
