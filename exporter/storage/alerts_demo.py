"""The demo's incidents: a few in each state, with their histories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from exporter.storage.alerts import INSERT_EVENT
from exporter.storage.database import Database

_DEMO = [
    # (title, severity, alert_type, service, status, hours ago)
    ("Dashboard API p95 latency above 1s", "high", "performance", "dashboard_api", "active", 1),
    ("Orders missing e-mail addresses", "medium", "data_quality", "supabase_db", "active", 3),
    ("Sync worker restarted 5 times", "critical", "system_error", "data_sync", "active", 0.2),
    ("Freshness of warehouse orders over 6h", "medium", "data_quality", "data_sync",
     "acknowledged", 8),
    ("Disk 85% full on db-1", "high", "system_error", "supabase_db", "acknowledged", 5),
    ("Repeated failed logins for admin", "critical", "security", "dashboard_api", "resolved", 30),
    ("Report generation slower than 30s", "low", "performance", "dashboard_api", "resolved", 50),
    ("Kajabi members with invalid e-mail", "medium", "data_quality", "supabase_db", "resolved", 72),
]  # fmt: skip


async def seed_demo(db: Database) -> int:
    """Insert the demo incidents (a few in each state) unless they are there; how many added."""
    now = datetime.now(UTC)
    async with db.transaction() as conn:
        if await conn.fetchval(
            db.sql("SELECT 1 FROM __SCHEMA__.system_alerts WHERE fingerprint LIKE 'demo-%' LIMIT 1")
        ):
            return 0
        for i, (title, severity, alert_type, service, status, hours) in enumerate(_DEMO):
            starts = now - timedelta(hours=hours)
            labels = msgspec.json.encode(
                {"alertname": title.split(" ")[0], "service": service, "severity": severity}
            ).decode()
            alert_id = await conn.fetchval(
                db.sql("""
                INSERT INTO __SCHEMA__.system_alerts (fingerprint, starts_at, alert_type, severity,
                    title, service_name, labels, source, status, acknowledged_by, acknowledged_at,
                    resolved_by, resolved_at)
                VALUES ($1, $2::timestamptz, $3, $4, $5, $6, $7::jsonb, 'exporter', $8::text,
                    CASE WHEN $8 <> 'active' THEN 'oncall' END,
                    CASE WHEN $8 <> 'active' THEN $2::timestamptz + interval '10 minutes' END,
                    CASE WHEN $8 = 'resolved' THEN 'oncall' END,
                    CASE WHEN $8 = 'resolved' THEN $2::timestamptz + interval '1 hour' END)
                RETURNING id"""),
                f"demo-{i}", starts, alert_type, severity, title, service, labels, status,
            )  # fmt: skip
            steps: list[tuple[str | None, str, str, timedelta]] = [
                (None, "active", "exporter", timedelta()),
            ]
            if status != "active":
                steps.append(("active", "acknowledged", "oncall", timedelta(minutes=10)))
            if status == "resolved":
                steps.append(("acknowledged", "resolved", "oncall", timedelta(hours=1)))
            for from_status, to_status, actor, delay in steps:
                await conn.execute(
                    db.sql(INSERT_EVENT), alert_id, from_status, to_status, actor, None,
                    starts + delay,
                )  # fmt: skip
    return len(_DEMO)
