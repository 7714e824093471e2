"""What ``system_alerts`` records of Alertmanager: reconciliation (one statement per pass),
the silences of acknowledgements, the alerts we send, and the work still pending.

The work pending is read from the incidents' own columns (domain.alertmanager.pending says
the same in Python): an acknowledged incident without a live silence, a live silence of an
incident no longer acknowledged, an API alert not sent yet or whose end is not sent yet.
Results are stored in bulk, each conditional on the incident being as it was when the call
started, so a request and the leader doing the same work at once never record it twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from exporter.domain import alert as lifecycle
from exporter.domain.alertmanager import MARKER, Firing
from exporter.storage.alerts import row_dict
from exporter.storage.database import Database
from exporter.storage.maintenance import in_window

_encode = msgspec.json.Encoder().encode

# One statement per pass, whatever the number of alerts: the alerts of every Alertmanager,
# merged, arrive as one JSON document. Alerts no incident holds open an incident (a webhook
# that never came: a route that does not reach us, an alert silenced from the start, a
# re-fire the notification log held back); the silences and inhibitions of the others are
# recorded where they changed; alerts we sent (MARKER) are matched to their incident; and,
# when every Alertmanager answered ($2), open incidents from Alertmanager that none of them
# holds any more are resolved -- those created before the alerts were read ($3), so an
# incident a webhook opens meanwhile is never taken for gone. The CTEs touch disjoint rows.
RECONCILE = f"""
WITH incoming AS MATERIALIZED (
    SELECT e->>0 AS fingerprint, (e->>1)::timestamptz AS starts_at, e->>2 AS alert_type,
           e->>3 AS severity, e->>4 AS title, e->>5 AS description, e->>6 AS service_name,
           e->7 AS labels, e->8 AS annotations, e->>9 AS generator_url,
           ARRAY(SELECT jsonb_array_elements_text(e->10)) AS silenced_by,
           ARRAY(SELECT jsonb_array_elements_text(e->11)) AS inhibited_by,
           e->>12 AS state, e->>13 AS marker
    FROM jsonb_array_elements($1::jsonb) AS x(e)
), opened AS (
    INSERT INTO __SCHEMA__.system_alerts AS a
        (fingerprint, starts_at, status, alert_type, severity, title, description, service_name,
         labels, annotations, source, generator_url, silenced_by, inhibited_by,
         alertmanager_state, maintenance_id)
    SELECT i.fingerprint, i.starts_at, 'active', i.alert_type, i.severity, i.title,
           i.description, i.service_name, i.labels, i.annotations, 'alertmanager',
           i.generator_url, i.silenced_by, i.inhibited_by, i.state,
           {in_window("i.labels", "i.service_name")}
    FROM incoming AS i
    WHERE i.marker IS NULL
      AND NOT EXISTS (SELECT FROM __SCHEMA__.system_alerts AS s
                      WHERE s.fingerprint = i.fingerprint AND s.starts_at = i.starts_at)
    ORDER BY i.fingerprint, i.starts_at
    ON CONFLICT (fingerprint, starts_at) DO NOTHING
    RETURNING a.id
), opened_events AS (
    INSERT INTO __SCHEMA__.system_alert_events (alert_id, from_status, to_status, actor, note)
    SELECT id, NULL, 'active', 'alertmanager',
           'opened by reconciliation: Alertmanager holds the alert, no notification came'
    FROM opened
), seen AS (
    UPDATE __SCHEMA__.system_alerts AS a
    SET silenced_by = i.silenced_by, inhibited_by = i.inhibited_by, alertmanager_state = i.state
    FROM incoming AS i
    WHERE i.marker IS NULL AND a.fingerprint = i.fingerprint AND a.starts_at = i.starts_at
      AND a.status <> 'resolved'
      AND (a.silenced_by, a.inhibited_by, a.alertmanager_state)
          IS DISTINCT FROM (i.silenced_by, i.inhibited_by, i.state)
    RETURNING a.id
), ours AS (
    UPDATE __SCHEMA__.system_alerts AS a
    SET silenced_by = i.silenced_by, inhibited_by = i.inhibited_by, alertmanager_state = i.state,
        alertmanager_fingerprint = i.fingerprint
    FROM incoming AS i
    WHERE i.marker IS NOT NULL AND a.fingerprint = i.marker AND a.source <> 'alertmanager'
      AND a.status <> 'resolved'
      AND (a.silenced_by, a.inhibited_by, a.alertmanager_state, a.alertmanager_fingerprint)
          IS DISTINCT FROM (i.silenced_by, i.inhibited_by, i.state, i.fingerprint)
    RETURNING a.id
), gone AS (
    UPDATE __SCHEMA__.system_alerts AS a
    SET status = 'resolved', resolved_by = 'alertmanager', resolved_at = now()
    WHERE $2::boolean AND a.status <> 'resolved' AND a.source = 'alertmanager'
      AND a.created_at < $3::timestamptz
      AND NOT EXISTS (SELECT FROM incoming AS i
                      WHERE i.fingerprint = a.fingerprint AND i.starts_at = a.starts_at)
    RETURNING a.id, a.acknowledged_at IS NOT NULL AS was_acknowledged,
              a.silence_id IS NOT NULL AND a.silence_ends_at > now() AS silenced
), gone_events AS (
    INSERT INTO __SCHEMA__.system_alert_events (alert_id, from_status, to_status, actor, note)
    SELECT id, CASE WHEN was_acknowledged THEN 'acknowledged' ELSE 'active' END, 'resolved',
           'alertmanager', 'no Alertmanager holds the alert any more'
    FROM gone
)
SELECT (SELECT count(*) FROM opened) AS opened, (SELECT count(*) FROM gone) AS resolved,
       (SELECT count(*) FROM seen) + (SELECT count(*) FROM ours) AS updated,
       ARRAY(SELECT id FROM gone WHERE silenced) AS silenced
"""

# Work pending on incidents (domain.alertmanager.pending): each arm reads a partial index.
# Incidents changed in the last moments are left to the request that changed them.
PENDING = """
SELECT * FROM __SCHEMA__.system_alerts WHERE id IN (
    SELECT id FROM __SCHEMA__.system_alerts
    WHERE status = 'acknowledged' AND (silence_id IS NULL OR silence_ends_at <= now())
      AND (source <> 'alertmanager' OR labels <> '{}')
    UNION
    SELECT id FROM __SCHEMA__.system_alerts
    WHERE silence_id IS NOT NULL AND silence_ends_at > now() AND status <> 'acknowledged'
    UNION
    SELECT id FROM __SCHEMA__.system_alerts
    WHERE source <> 'alertmanager'
      AND ((status <> 'resolved' AND sent_at IS NULL)
           OR (status = 'resolved' AND sent_at < resolved_at))
) AND updated_at < now() - $2::float8 * interval '1 second'
ORDER BY id LIMIT $1
"""
# acknowledgements whose silence ends within $1 seconds (and may be extended)
EXPIRING_SILENCES = """
SELECT * FROM __SCHEMA__.system_alerts
WHERE status = 'acknowledged' AND silence_id IS NOT NULL
  AND silence_ends_at > now() AND silence_ends_at < now() + $1::float8 * interval '1 second'
  AND (acknowledged_until IS NULL OR silence_ends_at < acknowledged_until)
ORDER BY id
"""
# the alerts we send, open: re-sent every pass so Alertmanager keeps them
OPEN_OUTGOING = """
SELECT * FROM __SCHEMA__.system_alerts
WHERE source <> 'alertmanager' AND status <> 'resolved' ORDER BY id
"""

# A silence made for an acknowledgement: kept only if the incident still wants it
SILENCED = """
UPDATE __SCHEMA__.system_alerts AS a
SET silence_id = t.silence_id, silence_ends_at = t.ends_at, alertmanager_error = NULL
FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::text[])
     AS t(id, silence_id, ends_at, previous)
WHERE a.id = t.id AND a.status = 'acknowledged'
  AND (a.silence_id IS NOT DISTINCT FROM t.previous
       OR a.silence_id IS NULL OR a.silence_ends_at <= now())
RETURNING a.id
"""
EXPIRED = """
UPDATE __SCHEMA__.system_alerts AS a SET silence_ends_at = now(), alertmanager_error = NULL
FROM unnest($1::bigint[], $2::text[]) AS t(id, silence_id)
WHERE a.id = t.id AND a.silence_id = t.silence_id AND a.silence_ends_at > now()
"""
SENT = """
UPDATE __SCHEMA__.system_alerts AS a
SET sent_at = greatest(a.sent_at, t.at), alertmanager_error = NULL
FROM unnest($1::bigint[], $2::timestamptz[]) AS t(id, at)
WHERE a.id = t.id
"""
FAILED = """
UPDATE __SCHEMA__.system_alerts AS a SET alertmanager_error = t.error
FROM unnest($1::bigint[], $2::text[]) AS t(id, error)
WHERE a.id = t.id AND a.alertmanager_error IS DISTINCT FROM t.error
"""
CLEARED = """
UPDATE __SCHEMA__.system_alerts SET alertmanager_error = NULL
WHERE id = ANY($1::bigint[]) AND alertmanager_error IS NOT NULL
"""
BY_IDS = "SELECT * FROM __SCHEMA__.system_alerts WHERE id = ANY($1::bigint[]) ORDER BY id"
# the webhook brought back alerts we sent: remember the fingerprint Alertmanager gave them
LINK = """
UPDATE __SCHEMA__.system_alerts AS a SET alertmanager_fingerprint = t.fingerprint
FROM unnest($1::text[], $2::text[]) AS t(marker, fingerprint)
WHERE a.fingerprint = t.marker AND a.source <> 'alertmanager'
  AND a.alertmanager_fingerprint IS DISTINCT FROM t.fingerprint
"""


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What one reconciliation pass changed (and the resolved incidents whose silence to
    expire)."""

    opened: int
    resolved: int
    updated: int
    silenced: list[int]


def _document(alerts: Sequence[Firing]) -> str:
    rows = []
    for a in alerts:
        labels, annotations = a.labels, a.annotations
        rows.append(
            (
                a.fingerprint,
                a.starts_at,
                lifecycle.alert_type_of(labels),
                lifecycle.severity_of(labels),
                lifecycle.title_of(labels, annotations, a.fingerprint),
                lifecycle.description_of(annotations),
                lifecycle.service_of(labels),
                labels,
                annotations,
                a.generator_url,
                a.silenced_by,
                a.inhibited_by,
                a.state,
                labels.get(MARKER),
            )
        )
    return _encode(rows).decode()


async def reconcile(
    conn: Any, db: Database, alerts: Sequence[Firing], resolve: bool, read_at: datetime
) -> Reconciled:
    """Bring the incidents in line with the alerts Alertmanager holds (one statement)."""
    row = await conn.fetchrow(db.sql(RECONCILE), _document(alerts), resolve, read_at)
    return Reconciled(row["opened"], row["resolved"], row["updated"], list(row["silenced"]))


async def by_ids(db: Database, ids: Sequence[int]) -> list[dict[str, Any]]:
    """Incidents by id."""
    async with db.connection() as conn:
        return [row_dict(r) for r in await conn.fetch(db.sql(BY_IDS), list(ids))]


async def pending(db: Database, limit: int, settle: float) -> list[dict[str, Any]]:
    """Incidents with Alertmanager work pending, untouched for ``settle`` seconds."""
    async with db.connection() as conn:
        return [row_dict(r) for r in await conn.fetch(db.sql(PENDING), limit, settle)]


async def expiring_silences(db: Database, within: float) -> list[dict[str, Any]]:
    """Acknowledged incidents whose silence ends within ``within`` seconds."""
    async with db.connection() as conn:
        return [row_dict(r) for r in await conn.fetch(db.sql(EXPIRING_SILENCES), within)]


async def open_outgoing(db: Database) -> list[dict[str, Any]]:
    """The open incidents we send to Alertmanager."""
    async with db.connection() as conn:
        return [row_dict(r) for r in await conn.fetch(db.sql(OPEN_OUTGOING))]


@dataclass
class Results:
    """Outcomes of Alertmanager calls, stored together."""

    #: (incident, new silence, its end, the silence it replaces)
    silenced: list[tuple[int, str, datetime, str | None]]
    expired: list[tuple[int, str]]
    sent: list[tuple[int, datetime]]
    failed: list[tuple[int, str]]
    #: incidents whose last error is over (a repeated call worked)
    cleared: list[int]

    @classmethod
    def empty(cls) -> Results:
        """Nothing yet."""
        return cls([], [], [], [], [])


async def store(conn: Any, db: Database, results: Results) -> list[tuple[str, datetime]]:
    """Store what the calls did; the silences made for incidents that no longer want them
    (to be expired), as (silence, end)."""
    unwanted: list[tuple[str, datetime]] = []
    if results.silenced:
        ids, silences, ends, previous = (list(c) for c in zip(*results.silenced, strict=True))
        kept = {r["id"] for r in await conn.fetch(db.sql(SILENCED), ids, silences, ends, previous)}
        unwanted = [(s, e) for i, s, e, _ in results.silenced if i not in kept]
    if results.expired:
        ids, silences = (list(c) for c in zip(*results.expired, strict=True))
        await conn.execute(db.sql(EXPIRED), ids, silences)
    if results.sent:
        ids, ats = (list(c) for c in zip(*results.sent, strict=True))
        await conn.execute(db.sql(SENT), ids, ats)
    if results.failed:
        ids, errors = (list(c) for c in zip(*results.failed, strict=True))
        await conn.execute(db.sql(FAILED), ids, [e[:1000] for e in errors])
    if results.cleared:
        await conn.execute(db.sql(CLEARED), results.cleared)
    return unwanted


async def link(db: Database, pairs: Sequence[tuple[str, str]]) -> None:
    """Remember the fingerprints Alertmanager gave the alerts we sent (marker, fingerprint)."""
    if not pairs:
        return
    markers, fingerprints = (list(c) for c in zip(*pairs, strict=True))
    async with db.connection() as conn:
        await conn.execute(db.sql(LINK), markers, fingerprints)
