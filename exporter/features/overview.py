"""The overview: one verdict over services, open incidents and data quality.

Built from the replica's views (series statuses, alert counts, the quality scoreboard), which
every replica keeps in step with PostgreSQL, so every replica gives the same answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from aiohttp import web
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from exporter.domain import quality as q
from exporter.domain.alert import open_by_severity
from exporter.domain.health import STATUS_CODE, verdict, worst
from exporter.domain.health_records import Overview, QualitySummary, ServiceStatus
from exporter.features import quality as quality_feature
from exporter.features.alerts import BRIDGE
from exporter.features.core import DATABASE, EXPOSITION
from exporter.features.health import HEALTH
from exporter.features.quality import QUALITY
from exporter.storage import alerts as alert_store


async def current(app: web.Application) -> Overview:
    """The overview for the API: alert counts and quality scores read now (a few rows each),
    the services from the views (current within moments of a commit on every replica)."""
    counts = await alert_store.count_alerts(app[DATABASE])
    return build(app, counts, (await quality_feature.overview(app)).overall)


def build(
    app: web.Application,
    counts: dict[tuple[str, str], int] | None = None,
    quality: q.Overall | None = None,
) -> Overview:
    """The overview as this replica's views see it now (or with the counts and scores given)."""
    by_service = app[HEALTH].statuses()
    statuses = {name: worst(list(metrics.values())) for name, metrics in by_service.items()}
    services = [
        ServiceStatus(name, statuses[name], metrics) for name, metrics in sorted(by_service.items())
    ]
    alerts = open_by_severity(counts if counts is not None else app[BRIDGE].counts or {})
    if quality is None:
        quality = q.overview(app[QUALITY].scoreboard.members()).overall
    status = verdict(list(statuses.values()), alerts, quality.status)
    return Overview(
        status,
        services,
        alerts,
        QualitySummary(quality.score, quality.status, quality.sources),
        datetime.now(UTC),
    )


class OverallCollector:
    """``monitoring_overall_status``: the overview's verdict."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        """The verdict now (once the alert counts are known)."""
        if self.app[BRIDGE].counts is None:
            return
        status = build(self.app).status
        yield GaugeMetricFamily(
            "monitoring_overall_status",
            "The overview's verdict: 0 healthy, 1 warning, 2 critical.",
            STATUS_CODE[status],  # type: ignore[index]  # the verdict is always a Status
        )


def setup(app: web.Application) -> None:
    """Export the verdict."""
    app[EXPOSITION].add("overview", OverallCollector(app))
