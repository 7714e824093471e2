"""Reads behind the overview: active alerts by severity, latest data-quality scores."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.storage.database import Database

ACTIVE_ALERTS_BY_SEVERITY = """
SELECT severity, count(*) AS n
FROM {schema}.system_alerts
WHERE status <> 'resolved'
GROUP BY severity
"""

# the latest measurement per source x dataset x dimension, then their statuses and mean score
LATEST_QUALITY = """
SELECT avg(score) AS average,
       count(*) FILTER (WHERE status = 'critical') AS critical,
       count(*) FILTER (WHERE status = 'warning') AS warning,
       count(*) AS latest
FROM (
    SELECT DISTINCT ON (source, dataset, dimension) score, status
    FROM {schema}.data_quality_indicators
    ORDER BY source, dataset, dimension, measured_at DESC, id DESC
) AS latest
"""


@dataclass(frozen=True)
class OverviewFigures:
    """What the overview reads from storage."""

    alerts: dict[str, int]
    quality_average: float | None
    quality_critical: int
    quality_warning: int
    quality_series: int


async def read_overview(db: Database) -> OverviewFigures:
    """Active (unresolved) alerts per severity and the latest data-quality figures."""
    async with db.connection() as conn:
        alert_rows = await conn.fetch(ACTIVE_ALERTS_BY_SEVERITY.format(schema=db.schema))
        quality = await conn.fetchrow(LATEST_QUALITY.format(schema=db.schema))
    alerts = {"low": 0, "medium": 0, "high": 0, "critical": 0}
    for row in alert_rows:
        alerts[row["severity"]] = row["n"]
    assert quality is not None
    average = quality["average"]
    return OverviewFigures(
        alerts,
        None if average is None else float(average),
        quality["critical"],
        quality["warning"],
        quality["latest"],
    )
