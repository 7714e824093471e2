"""The ``system_alerts`` and ``system_alert_events`` tables: bulk webhook upserts, lifecycle
changes, notes, queries, and the counts behind ``monitoring_alerts`` (the demo incidents are
in ``storage.alerts_demo``, what Alertmanager is owed in ``storage.alertmanager``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec

from exporter.domain import alert as lifecycle
from exporter.domain.alert import AlertRecord
from exporter.storage.database import Database
from exporter.storage.keyset import Keyset
from exporter.storage.maintenance import in_window

log = logging.getLogger(__name__)
_encode = msgspec.json.Encoder().encode

# One statement for a whole batch of notifications, its alerts one JSON document of
# AlertRecord arrays (one msgspec call to encode, one jsonb parse to read: binding twelve
# arrays cost the service more than the statement). The upsert encodes lifecycle.receive
# (a resolved incident never changes; firing repeats change no status), and its RETURNING
# feeds the events; the result names each changed incident by its record's position in the
# batch (integers are cheaper to read back than the key). xmax = 0 marks a freshly inserted
# row; a row resolved here was acknowledged before exactly when acknowledged_at is set
# (nothing else sets it).
UPSERT_WEBHOOK = f"""
WITH incoming AS (
    SELECT n, e->>0 AS fingerprint, (e->>1)::timestamptz AS starts_at, e->>2 AS status,
           e->>3 AS alert_type, e->>4 AS severity, e->>5 AS title, e->>6 AS description,
           e->>7 AS service_name, e->8 AS labels, e->9 AS annotations, e->>10 AS generator_url,
           (e->>11)::timestamptz AS ends_at
    FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, n)
), up AS (
    INSERT INTO __SCHEMA__.system_alerts AS a
        (fingerprint, starts_at, status, alert_type, severity, title, description, service_name,
         labels, annotations, source, generator_url, ends_at, resolved_by, resolved_at,
         maintenance_id)
    SELECT fingerprint, starts_at,
           CASE WHEN status = 'resolved' THEN 'resolved' ELSE 'active' END,
           alert_type, severity, title, description, service_name, labels,
           annotations, 'alertmanager', generator_url, ends_at,
           CASE WHEN status = 'resolved' THEN 'alertmanager' END,
           CASE WHEN status = 'resolved' THEN now() END,
           {in_window("labels", "service_name")}
    FROM incoming
    ORDER BY fingerprint, starts_at
    ON CONFLICT (fingerprint, starts_at) DO UPDATE SET
        status = CASE WHEN excluded.status = 'resolved' THEN 'resolved' ELSE a.status END,
        resolved_by = COALESCE(excluded.resolved_by, a.resolved_by),
        resolved_at = COALESCE(excluded.resolved_at, a.resolved_at),
        ends_at = COALESCE(excluded.ends_at, a.ends_at),
        alert_type = excluded.alert_type, severity = excluded.severity,
        title = excluded.title, description = excluded.description,
        service_name = excluded.service_name, labels = excluded.labels,
        annotations = excluded.annotations, generator_url = excluded.generator_url
    WHERE a.status <> 'resolved'
      AND (excluded.status = 'resolved'
           OR (a.alert_type, a.severity, a.title, a.description, a.service_name, a.labels,
               a.annotations, a.generator_url)
              IS DISTINCT FROM
              (excluded.alert_type, excluded.severity, excluded.title, excluded.description,
               excluded.service_name, excluded.labels, excluded.annotations,
               excluded.generator_url))
    RETURNING a.id, a.fingerprint, a.starts_at, a.status, a.silence_id, (a.xmax = 0) AS inserted,
              a.acknowledged_at IS NOT NULL AS was_acknowledged
), events AS (
    INSERT INTO __SCHEMA__.system_alert_events (alert_id, from_status, to_status, actor)
    SELECT id,
           CASE WHEN inserted THEN NULL
                WHEN was_acknowledged THEN 'acknowledged' ELSE 'active' END,
           status, 'alertmanager'
    FROM up
    WHERE inserted OR status = 'resolved'
)
SELECT i.n - 1, up.id, up.status, up.silence_id, up.inserted
FROM up JOIN incoming AS i USING (fingerprint, starts_at)
WHERE up.inserted OR up.status = 'resolved'
"""

# A manual alert; with a dedup key that an open incident holds, nothing (ON CONFLICT waits
# for a concurrent creation with the same key to commit, then finds it: one incident)
INSERT_MANUAL = f"""
WITH a AS (
    INSERT INTO __SCHEMA__.system_alerts
        (fingerprint, starts_at, alert_type, severity, title, description, service_name, labels,
         source, auto_resolve, auto_resolve_at, dedup_key, maintenance_id)
    SELECT $1, date_trunc('milliseconds', now()), $2, $3, $4, $5, $6, $7::jsonb, 'api',
           $8::float8 IS NOT NULL, now() + $8::float8 * interval '1 second', $10,
           {in_window("$7::jsonb", "$6::text")}
    ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL AND status <> 'resolved' DO NOTHING
    RETURNING *
), e AS (
    INSERT INTO __SCHEMA__.system_alert_events (alert_id, from_status, to_status, actor, note)
    SELECT id, NULL, 'active', $9, 'created through the API' FROM a
)
SELECT * FROM a
"""
SELECT_OPEN_KEY = """
SELECT * FROM __SCHEMA__.system_alerts WHERE dedup_key = $1 AND status <> 'resolved'
"""

SELECT_ONE = "SELECT * FROM __SCHEMA__.system_alerts WHERE id = $1"
LOCK_ONE = "SELECT * FROM __SCHEMA__.system_alerts WHERE id = $1 FOR UPDATE"
SELECT_EVENTS = """
SELECT id, from_status, to_status, actor, note, at FROM __SCHEMA__.system_alert_events
WHERE alert_id = $1 ORDER BY at, id
"""
# A silence that may still be live stays with the incident: acknowledging again reuses it
# (extended by reconciliation) instead of making a second one; an expired one is forgotten
UPDATE_LIFECYCLE = """
UPDATE __SCHEMA__.system_alerts
SET status = $2, acknowledged_by = $3, acknowledged_at = $4, resolved_by = $5, resolved_at = $6,
    acknowledged_until = $7,
    silence_id = CASE WHEN silence_ends_at > now() THEN silence_id END,
    silence_ends_at = CASE WHEN silence_ends_at > now() THEN silence_ends_at END
WHERE id = $1 RETURNING *
"""
INSERT_EVENT = """
INSERT INTO __SCHEMA__.system_alert_events (alert_id, from_status, to_status, actor, note, at)
VALUES ($1, $2, $3, $4, $5, $6)
"""
AUTO_RESOLVE = """
WITH due AS (
    UPDATE __SCHEMA__.system_alerts
    SET status = 'resolved', resolved_by = 'auto-resolve', resolved_at = now()
    WHERE auto_resolve AND status <> 'resolved' AND auto_resolve_at <= now()
    RETURNING id, acknowledged_at IS NOT NULL AS was_acknowledged
), e AS (
    INSERT INTO __SCHEMA__.system_alert_events (alert_id, from_status, to_status, actor, note)
    SELECT id, CASE WHEN was_acknowledged THEN 'acknowledged' ELSE 'active' END, 'resolved',
           'auto-resolve', 'auto_resolve_after elapsed'
    FROM due
)
SELECT id FROM due
"""
# lifecycle.expire_acknowledgement for every acknowledgement whose until has come
EXPIRE_ACKNOWLEDGEMENTS = """
WITH due AS (
    SELECT id, acknowledged_by, acknowledged_until FROM __SCHEMA__.system_alerts
    WHERE status = 'acknowledged' AND acknowledged_until <= now()
    ORDER BY id FOR UPDATE
), back AS (
    UPDATE __SCHEMA__.system_alerts AS a
    SET status = 'active', acknowledged_by = NULL, acknowledged_at = NULL,
        acknowledged_until = NULL
    FROM due WHERE a.id = due.id
    RETURNING a.id
), e AS (
    INSERT INTO __SCHEMA__.system_alert_events (alert_id, from_status, to_status, actor, note)
    SELECT id, 'acknowledged', 'active', 'ack-expiry',
           format('acknowledged by %s until %s', acknowledged_by,
                  to_char(acknowledged_until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
    FROM due
)
SELECT id FROM back
"""
# a note: an event that changes nothing (from_status = to_status)
INSERT_NOTE = """
WITH a AS (SELECT id, status FROM __SCHEMA__.system_alerts WHERE id = $1 FOR SHARE)
INSERT INTO __SCHEMA__.system_alert_events (alert_id, from_status, to_status, actor, note)
SELECT id, status, status, $2, $3 FROM a
RETURNING id, from_status, to_status, actor, note, at
"""
OPEN_BY_KEY = """
SELECT id FROM __SCHEMA__.system_alerts WHERE dedup_key = $1 AND status <> 'resolved'
"""
# system_alert_counts is kept by triggers (migration 4): a few rows per (status, severity)
COUNTS = """
SELECT status, severity, sum(n)::bigint AS n FROM __SCHEMA__.system_alert_counts GROUP BY 1, 2
"""
# open incidents opened in a maintenance window, per window and severity (few rows)
MAINTENANCE_COUNTS = """
SELECT maintenance_id, severity, count(*) AS n FROM __SCHEMA__.system_alerts
WHERE maintenance_id IS NOT NULL AND status <> 'resolved' GROUP BY 1, 2
"""

LIST = Keyset(
    "SELECT * FROM __SCHEMA__.system_alerts",
    "starts_at",
    {
        "status": "status = ANY($?::text[])",
        "severity": "severity = ANY($?::text[])",
        "alert_type": "alert_type = ANY($?::text[])",
        "service": "service_name = $?",
        "since": "starts_at >= $?",
        "until": "starts_at < $?",
    },
)


def row_dict(record: Any) -> dict[str, Any]:
    row = dict(record)
    for key in ("labels", "annotations"):
        if isinstance(row.get(key), str):
            row[key] = msgspec.json.decode(row[key])
    return row


def incident_of(row: dict[str, Any]) -> lifecycle.Incident:
    """The lifecycle part of a row."""
    return lifecycle.Incident(
        row["status"],
        row["acknowledged_by"],
        row["acknowledged_at"],
        row["resolved_by"],
        row["resolved_at"],
        row.get("acknowledged_until"),
    )


class Changed(NamedTuple):
    """An incident a notification opened or resolved (a row of the upsert's result)."""

    position: int  # of its record in the upserted batch
    id: int
    status: str
    silence_id: str | None
    inserted: bool


@dataclass(slots=True)
class Outcome:
    """What a notification did: the incidents it changed, and how many alerts changed nothing."""

    changed: list[Changed] = field(default_factory=list)
    duplicates: int = 0


async def upsert_alerts(conn: Any, db: Database, records: Sequence[AlertRecord]) -> list[Changed]:
    """Upsert distinct incidents (one statement, hence one transaction) and write the events."""
    if not records:
        return []
    rows = await conn.fetch(db.sql(UPSERT_WEBHOOK), _encode(records).decode())
    return [Changed(*r) for r in rows]


def collapse(batches: Sequence[Sequence[AlertRecord]]) -> tuple[list[AlertRecord], list[int]]:
    """One record per incident (ON CONFLICT cannot touch a row twice in one statement).

    Any resolved wins (lifecycle.merge_signals); otherwise the last delivered wins. Also
    returns, for each record, the index of the first batch that carried its incident.
    """
    merged: dict[tuple[str, datetime], AlertRecord] = {}
    owner: dict[tuple[str, datetime], int] = {}
    for index, records in enumerate(batches):
        for record in records:
            key = (record.fingerprint, record.starts_at)
            previous = merged.get(key)
            if previous is None:
                owner[key] = index
            elif previous.signal == "resolved" and record.signal == "firing":
                continue
            merged[key] = record
    return list(merged.values()), list(owner.values())


async def write_batch(
    conn: Any, db: Database, batch: Sequence[Sequence[AlertRecord]]
) -> list[Outcome]:
    """Store several notifications with one statement (one transaction); an outcome each."""
    records, owner_of = collapse(batch)
    changed = await upsert_alerts(conn, db, records)
    outcomes = [Outcome() for _ in batch]
    for change in changed:
        outcomes[owner_of[change.position]].changed.append(change)
    for mine, outcome in zip(batch, outcomes, strict=True):
        outcome.duplicates = len(mine) - len(outcome.changed)
    return outcomes


async def create_alert(
    db: Database,
    fingerprint: str,
    values: tuple[str, str, str, str | None, str | None, str],
    auto_resolve_after: float | None,
    actor: str,
    dedup_key: str | None = None,
) -> tuple[dict[str, Any], bool]:
    """Insert a manual alert (source ``api``) with its creation event; with a dedup key that
    an open incident holds, that incident instead. (row, whether it was created)."""
    alert_type, severity, title, description, service, labels = values
    async with db.transaction() as conn:
        while True:
            record = await conn.fetchrow(
                db.sql(INSERT_MANUAL),
                fingerprint, alert_type, severity, title, description, service, labels,
                auto_resolve_after, actor, dedup_key,
            )  # fmt: skip
            if record is not None:
                return row_dict(record), True
            # the key's incident committed meanwhile: this statement sees it (read committed),
            # unless it was resolved since, and then the key is free again
            record = await conn.fetchrow(db.sql(SELECT_OPEN_KEY), dedup_key)
            if record is not None:
                return row_dict(record), False


async def get_alert(
    db: Database, alert_id: int
) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """One alert and its events, oldest first."""
    async with db.connection() as conn:
        record = await conn.fetchrow(db.sql(SELECT_ONE), alert_id)
        if record is None:
            return None
        events = await conn.fetch(db.sql(SELECT_EVENTS), alert_id)
    return row_dict(record), [dict(e) for e in events]


async def change_alert(
    db: Database, alert_id: int, operation: Callable[[lifecycle.Incident], lifecycle.Transition]
) -> tuple[dict[str, Any], lifecycle.Transition] | None:
    """Apply a lifecycle operation to one alert under a row lock; None when it does not exist.

    lifecycle.Conflict propagates (and rolls back).
    """
    async with db.transaction() as conn:
        record = await conn.fetchrow(db.sql(LOCK_ONE), alert_id)
        if record is None:
            return None
        transition = operation(incident_of(dict(record)))
        event, state = transition.event, transition.incident
        if event is not None:
            record = await conn.fetchrow(
                db.sql(UPDATE_LIFECYCLE),
                alert_id, state.status, state.acknowledged_by, state.acknowledged_at,
                state.resolved_by, state.resolved_at, state.acknowledged_until,
            )  # fmt: skip
            at = {"resolved": state.resolved_at, "acknowledged": state.acknowledged_at}.get(
                state.status
            )
            await conn.execute(
                db.sql(INSERT_EVENT),
                alert_id, event.from_status, event.to_status, event.actor, event.note,
                at or datetime.now(UTC),
            )  # fmt: skip
    return row_dict(record), transition


async def open_by_key(db: Database, dedup_key: str) -> int | None:
    """The open incident holding a dedup key, if any."""
    async with db.connection() as conn:
        found: int | None = await conn.fetchval(db.sql(OPEN_BY_KEY), dedup_key)
    return found


async def add_note(db: Database, alert_id: int, by: str, note: str) -> dict[str, Any] | None:
    """Keep a note on an incident as an event; None when there is no such incident."""
    async with db.connection() as conn:
        record = await conn.fetchrow(db.sql(INSERT_NOTE), alert_id, by, note)
    return None if record is None else dict(record)


async def resolve_due(conn: Any, db: Database) -> list[int]:
    """Resolve alerts whose ``auto_resolve_after`` elapsed; their ids."""
    return [r["id"] for r in await conn.fetch(db.sql(AUTO_RESOLVE))]


async def expire_acknowledgements(conn: Any, db: Database) -> list[int]:
    """Acknowledgements whose ``until`` came return to active; their ids."""
    return [r["id"] for r in await conn.fetch(db.sql(EXPIRE_ACKNOWLEDGEMENTS))]


async def list_alerts(
    db: Database, filters: dict[str, Any], after: tuple[datetime, int] | None, limit: int
) -> list[dict[str, Any]]:
    """Alerts newest first (by starts_at, id), filtered; ``after`` continues a page."""
    return [row_dict(r) for r in await LIST.page(db, filters, after, limit)]


async def count_alerts(db: Database) -> dict[tuple[str, str], int]:
    """Incidents by (status, severity)."""
    async with db.connection() as conn:
        rows = await conn.fetch(db.sql(COUNTS))
    return {(r["status"], r["severity"]): r["n"] for r in rows}


async def count_in_maintenance(db: Database) -> dict[tuple[int, str], int]:
    """Open incidents opened in a maintenance window, by (window, severity)."""
    async with db.connection() as conn:
        rows = await conn.fetch(db.sql(MAINTENANCE_COUNTS))
    return {(r["maintenance_id"], r["severity"]): r["n"] for r in rows}
