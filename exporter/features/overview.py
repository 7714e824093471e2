"""The overview: one verdict over services, open incidents and data quality.

Built from the replica's views (series statuses, alert counts, the quality scoreboard, the
maintenance windows), which every replica keeps in step with PostgreSQL, so every replica
gives the same answer. Services and sources in a maintenance window show ``maintenance`` and
raise nothing, and neither do the open incidents opened in a window still in force.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Literal

from aiohttp import web
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from exporter.domain import quality as q
from exporter.domain.alert import SEVERITIES, open_by_severity
from exporter.domain.health import MAINTENANCE, STATUS_CODE, Status, verdict, worst
from exporter.domain.health_records import (
    MaintenanceSummary,
    Overview,
    QualitySummary,
    ServiceStatus,
)
from exporter.features import quality as quality_feature
from exporter.features.alerts import BRIDGE
from exporter.features.core import DATABASE, EXPOSITION, LEADERSHIP
from exporter.features.health import HEALTH
from exporter.features.leader import Job, Run
from exporter.features.maintenance import MAINTENANCE as WINDOWS
from exporter.features.quality import QUALITY
from exporter.storage import alerts as alert_store
from exporter.storage import changes

#: seconds between two looks at the verdict for the stream's status_changes channel
VERDICT_INTERVAL = 5.0


async def current(app: web.Application) -> Overview:
    """The overview for the API: alert counts and quality scores read now (a few rows each),
    the services and windows from the views (current within moments of a commit on every
    replica)."""
    db = app[DATABASE]
    counts = await alert_store.count_alerts(db)
    in_maintenance = await alert_store.count_in_maintenance(db)
    _, sources = app[WINDOWS].affected(datetime.now(UTC))
    quality = (await quality_feature.overview(app, without=sources)).overall
    return build(app, counts, quality, in_maintenance)


def build(
    app: web.Application,
    counts: dict[tuple[str, str], int] | None = None,
    quality: q.Overall | None = None,
    in_maintenance: dict[tuple[int, str], int] | None = None,
) -> Overview:
    """The overview as this replica's views see it now (or with the counts and scores given)."""
    now = datetime.now(UTC)
    windows = app[WINDOWS]
    paused, sources = windows.affected(now)
    by_service = app[HEALTH].statuses()
    statuses: dict[str, Status | Literal["maintenance"]] = {
        name: MAINTENANCE if name in paused else worst(list(metrics.values()))
        for name, metrics in by_service.items()
    }
    services = [
        ServiceStatus(name, statuses[name], metrics) for name, metrics in sorted(by_service.items())
    ]
    bridge = app[BRIDGE]
    alerts = open_by_severity(counts if counts is not None else bridge.counts or {})
    # open incidents opened in a window still in force raise nothing
    held = in_maintenance if in_maintenance is not None else bridge.in_maintenance
    in_force = windows.in_force(now)
    for (window, severity), n in held.items():
        if window in in_force and severity in SEVERITIES:
            alerts[severity] = max(0, alerts[severity] - n)
    if quality is None:
        members = [m for m in app[QUALITY].scoreboard.members() if m.source not in sources]
        quality = q.overview(members).overall
    status = verdict(list(statuses.values()), alerts, quality.status)
    return Overview(
        status,
        services,
        alerts,
        QualitySummary(quality.score, quality.status, quality.sources),
        now,
        MaintenanceSummary(sorted(paused), sorted(sources), sorted(in_force)),
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


async def _record_verdict(app: web.Application, run: Run) -> None:
    """Log the verdict on the stream's status_changes channel when it changed (the leader,
    fenced: one replica decides, so a change is logged once)."""
    status = (await current(app)).status
    async with run.commit() as conn:
        await changes.record_verdict(conn, app[DATABASE], status)


def setup(app: web.Application) -> None:
    """Export the verdict, and log its changes for the stream."""
    app[EXPOSITION].add("overview", OverallCollector(app))
    app[LEADERSHIP].add(
        Job("overview:verdict", VERDICT_INTERVAL, lambda run: _record_verdict(app, run))
    )
