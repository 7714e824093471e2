"""The data-quality families: scores and statuses, and each check's last run."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from exporter.domain import quality as q


@dataclass
class CheckRun:
    """The outcome of a check's last run, for its own gauges."""

    ok: bool
    duration: float
    at: float


class QualityCollector:
    """``monitoring_data_quality_*`` from the scoreboard, and each check's last run."""

    def __init__(
        self, scoreboard: q.Scoreboard, runs: Callable[[], Mapping[str, CheckRun]]
    ) -> None:
        self.scoreboard = scoreboard
        self.runs = runs

    def collect(self) -> Iterator[Metric]:
        """Rebuild the families from current state."""
        labels = ["source", "dataset", "dimension"]
        score = GaugeMetricFamily(
            "monitoring_data_quality_score", "Data-quality score, 0-100.", labels=labels
        )
        status = GaugeMetricFamily(
            "monitoring_data_quality_status",
            "Data-quality status: 0 healthy, 1 warning, 2 critical.",
            labels=labels,
        )
        for key, agg in self.scoreboard.series(time.time()):
            if agg.score is None:
                continue  # undefined: no sample rather than a made-up 0 or 100
            score.add_metric(list(key), agg.score)
            status.add_metric(list(key), q.STATUS_CODE[agg.status])
        ok = GaugeMetricFamily(
            "monitoring_quality_check_success",
            "Whether the quality check's last run succeeded (1) or failed (0).",
            labels=["check"],
        )
        took = GaugeMetricFamily(
            "monitoring_quality_check_duration_seconds",
            "How long the quality check's last run took.",
            labels=["check"],
        )
        last = GaugeMetricFamily(
            "monitoring_quality_check_last_run_timestamp_seconds",
            "When the quality check last ran (Unix time).",
            labels=["check"],
        )
        for name, run in sorted(self.runs().items()):
            ok.add_metric([name], 1.0 if run.ok else 0.0)
            took.add_metric([name], run.duration)
            last.add_metric([name], run.at)
        yield from (score, status, ok, took, last)
