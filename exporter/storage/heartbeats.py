"""The ``heartbeats`` table: beats, the configured heartbeats, and the incidents of late ones.

A heartbeat's incident carries the dedup key ``heartbeat:<name>``, so at most one is open
per heartbeat whoever opens it; a beat resolves it in the beat's own transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from exporter.storage.database import Database
from exporter.storage.maintenance import in_window

COLUMNS = """
h.id, h.name, h.interval_seconds, h.grace_seconds, h.title, h.severity, h.origin, h.enabled,
h.last_beat_at, h.beats, h.created_at, h.updated_at
"""

# The configured heartbeats as the YAML says, and those it no longer names disabled (API
# ones stay enabled while API creation is on); the open incident of a disabled one resolves.
SYNC_CONFIG = """
WITH configured AS (
    SELECT * FROM unnest($1::text[], $2::float8[], $3::float8[], $4::text[], $5::text[])
        AS t(name, interval_seconds, grace_seconds, title, severity)
), up AS (
    INSERT INTO __SCHEMA__.heartbeats AS h
        (name, interval_seconds, grace_seconds, title, severity, origin, enabled)
    SELECT name, interval_seconds, grace_seconds, title, severity, 'config', true
    FROM configured ORDER BY name
    ON CONFLICT (name) DO UPDATE SET
        interval_seconds = excluded.interval_seconds, grace_seconds = excluded.grace_seconds,
        title = excluded.title, severity = excluded.severity, origin = 'config', enabled = true
    WHERE (h.interval_seconds, h.grace_seconds, h.title, h.severity, h.origin, h.enabled)
          IS DISTINCT FROM (excluded.interval_seconds, excluded.grace_seconds, excluded.title,
                            excluded.severity, 'config', true)
), off AS (
    UPDATE __SCHEMA__.heartbeats AS h SET enabled = (h.origin = 'api' AND $6::boolean)
    WHERE h.name <> ALL($1::text[]) AND h.enabled <> (h.origin = 'api' AND $6::boolean)
    RETURNING h.name, h.enabled
), closed AS (
    UPDATE __SCHEMA__.system_alerts AS a
    SET status = 'resolved', resolved_by = 'heartbeat', resolved_at = now()
    FROM off WHERE NOT off.enabled AND a.dedup_key = 'heartbeat:' || off.name
      AND a.status <> 'resolved'
    RETURNING a.id, a.acknowledged_at IS NOT NULL AS was_acknowledged
)
INSERT INTO __SCHEMA__.system_alert_events (alert_id, from_status, to_status, actor, note)
SELECT id, CASE WHEN was_acknowledged THEN 'acknowledged' ELSE 'active' END, 'resolved',
       'heartbeat', 'the heartbeat is no longer configured'
FROM closed
RETURNING alert_id
"""

# A beat resolves the heartbeat's open incident, in the beat's transaction
_RESOLVE = """
fixed AS (
    UPDATE __SCHEMA__.system_alerts AS a
    SET status = 'resolved', resolved_by = 'heartbeat', resolved_at = now()
    WHERE a.dedup_key = 'heartbeat:' || $1 AND a.status <> 'resolved'
      AND EXISTS (SELECT FROM hb)
    RETURNING a.id, a.acknowledged_at IS NOT NULL AS was_acknowledged
), e AS (
    INSERT INTO __SCHEMA__.system_alert_events (alert_id, from_status, to_status, actor, note)
    SELECT id, CASE WHEN was_acknowledged THEN 'acknowledged' ELSE 'active' END, 'resolved',
           'heartbeat', 'a beat arrived'
    FROM fixed
)
SELECT hb.*, ARRAY(SELECT id FROM fixed) AS resolved FROM hb
"""
# A beat with settings: the heartbeat is created by it if new, and takes them
BEAT = f"""
WITH hb AS (
    INSERT INTO __SCHEMA__.heartbeats AS h
        (name, interval_seconds, grace_seconds, title, severity, origin, last_beat_at, beats)
    VALUES ($1, $2, $3, $4, $5, $6, now(), 1)
    ON CONFLICT (name) DO UPDATE SET
        last_beat_at = now(), beats = h.beats + 1, enabled = true,
        interval_seconds = excluded.interval_seconds, grace_seconds = excluded.grace_seconds,
        title = excluded.title, severity = excluded.severity, origin = excluded.origin
    RETURNING {COLUMNS}
), {_RESOLVE}"""
# A beat without settings: only a heartbeat created through the API before (none: no row)
BEAT_KNOWN = f"""
WITH hb AS (
    UPDATE __SCHEMA__.heartbeats AS h
    SET last_beat_at = now(), beats = h.beats + 1, enabled = true
    WHERE h.name = $1 AND h.origin = 'api'
    RETURNING {COLUMNS}
), {_RESOLVE}"""

# Late heartbeats open their incident (source exporter); one per heartbeat at a time.
OPEN_LATE = f"""
WITH late AS (
    SELECT h.*, jsonb_build_object('alertname', 'HeartbeatMissing', 'heartbeat', h.name)
               AS labels
    FROM __SCHEMA__.heartbeats AS h
    WHERE h.enabled
      AND coalesce(h.last_beat_at, h.created_at)
          + (h.interval_seconds + h.grace_seconds) * interval '1 second' < now()
      AND NOT EXISTS (SELECT FROM __SCHEMA__.system_alerts AS a
                      WHERE a.dedup_key = 'heartbeat:' || h.name AND a.status <> 'resolved')
    ORDER BY h.name
), opened AS (
    INSERT INTO __SCHEMA__.system_alerts
        (fingerprint, starts_at, alert_type, severity, title, description, labels, source,
         dedup_key, maintenance_id)
    SELECT 'exporter-' || gen_random_uuid(), date_trunc('milliseconds', now()),
           'system_error', l.severity, coalesce(l.title, 'Heartbeat ' || l.name || ' is late'),
           CASE WHEN l.last_beat_at IS NULL
                THEN format('No beat of heartbeat %s yet (one is expected every %s s, %s s '
                            'grace).', l.name, l.interval_seconds, l.grace_seconds)
                ELSE format('No beat of heartbeat %s since %s (one is expected every %s s, '
                            '%s s grace).', l.name,
                            to_char(l.last_beat_at AT TIME ZONE 'UTC',
                                    'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                            l.interval_seconds, l.grace_seconds)
           END,
           l.labels, 'exporter', 'heartbeat:' || l.name, {in_window("l.labels", "NULL::text")}
    FROM late AS l
    ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL AND status <> 'resolved' DO NOTHING
    RETURNING id
), e AS (
    INSERT INTO __SCHEMA__.system_alert_events (alert_id, from_status, to_status, actor, note)
    SELECT id, NULL, 'active', 'heartbeat', 'the heartbeat is late' FROM opened
)
SELECT id FROM opened
"""

LIST = f"""
SELECT {COLUMNS}, a.id AS alert_id
FROM __SCHEMA__.heartbeats AS h
LEFT JOIN __SCHEMA__.system_alerts AS a
       ON a.dedup_key = 'heartbeat:' || h.name AND a.status <> 'resolved'
ORDER BY h.name
"""
ALL = f"SELECT {COLUMNS} FROM __SCHEMA__.heartbeats AS h"
SOME = f"SELECT {COLUMNS} FROM __SCHEMA__.heartbeats AS h WHERE h.id = ANY($1::bigint[])"


@dataclass(frozen=True, slots=True)
class Settings:
    """How a heartbeat is stored: its interval and grace (seconds), title and severity."""

    interval: float
    grace: float
    title: str | None
    severity: str


async def sync_config(
    conn: Any, db: Database, configured: Sequence[tuple[str, Settings]], api_enabled: bool
) -> list[int]:
    """Store the configured heartbeats; the incidents resolved because one was dropped."""
    rows = await conn.fetch(
        db.sql(SYNC_CONFIG),
        [name for name, _ in configured],
        [s.interval for _, s in configured],
        [s.grace for _, s in configured],
        [s.title for _, s in configured],
        [s.severity for _, s in configured],
        api_enabled,
    )
    return [r["alert_id"] for r in rows]


async def beat(
    db: Database, name: str, settings: Settings | None, origin: str
) -> tuple[dict[str, Any], list[int]] | None:
    """Record a beat: with ``settings`` the heartbeat is created (or updated) with them,
    without only one created through the API before beats (None when there is none). The
    heartbeat and the incidents the beat resolved."""
    async with db.transaction() as conn:
        if settings is None:
            row = await conn.fetchrow(db.sql(BEAT_KNOWN), name)
        else:
            row = await conn.fetchrow(
                db.sql(BEAT), name, settings.interval, settings.grace, settings.title,
                settings.severity, origin,
            )  # fmt: skip
    if row is None:
        return None
    out = dict(row)
    return out, list(out.pop("resolved"))


async def open_late(conn: Any, db: Database) -> list[int]:
    """Open the incidents of late heartbeats; their ids."""
    return [r["id"] for r in await conn.fetch(db.sql(OPEN_LATE))]


async def listing(db: Database) -> list[dict[str, Any]]:
    """Every heartbeat with its open incident's id, by name."""
    async with db.connection() as conn:
        return [dict(r) for r in await conn.fetch(db.sql(LIST))]


async def load(db: Database, ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Heartbeats (all, or by id) for the replicas' view."""
    async with db.connection() as conn:
        if ids is None:
            return [dict(r) for r in await conn.fetch(db.sql(ALL))]
        return [dict(r) for r in await conn.fetch(db.sql(SOME), list(ids))]
