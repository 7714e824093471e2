"""Reads behind the overview: active alerts by severity."""

from __future__ import annotations

from dataclasses import dataclass

from exporter.storage.database import Database

# the totals the triggers keep (migration 4): a few rows however many incidents are open
ACTIVE_ALERTS_BY_SEVERITY = """
SELECT severity, sum(n)::bigint AS n
FROM {schema}.system_alert_counts
WHERE status <> 'resolved'
GROUP BY severity
"""


@dataclass(frozen=True)
class OverviewFigures:
    """What the overview reads from storage."""

    alerts: dict[str, int]


async def read_overview(db: Database) -> OverviewFigures:
    """Active (unresolved) alerts per severity."""
    async with db.connection() as conn:
        alert_rows = await conn.fetch(ACTIVE_ALERTS_BY_SEVERITY.format(schema=db.schema))
    alerts = {"low": 0, "medium": 0, "high": 0, "critical": 0}
    for row in alert_rows:
        alerts[row["severity"]] = row["n"]
    return OverviewFigures(alerts)
