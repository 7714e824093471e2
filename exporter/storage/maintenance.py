"""The ``maintenance_windows`` table: windows, their silences, and their removal (a mark:
the writer deletes nothing)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from exporter.domain.maintenance import Window
from exporter.storage.database import Database
from exporter.storage.keyset import Keyset

# The maintenance windows in force now (domain.maintenance.occurrence in SQL: fixed periods
# of 24 h or 7 d from starts_at, no occurrence starting after repeat_until). Few rows; the
# statements that open incidents read it once (MATERIALIZED) to flag what a window matches.
WINDOWS_IN_FORCE = """
SELECT w.id, w.matchers FROM __SCHEMA__.maintenance_windows AS w
CROSS JOIN LATERAL (
    SELECT CASE w.recurrence WHEN 'daily' THEN 86400 WHEN 'weekly' THEN 604800 END AS period,
           extract(epoch FROM now() - w.starts_at) AS elapsed
) AS p
WHERE w.deleted_at IS NULL AND w.starts_at <= now()
  AND CASE WHEN w.recurrence IS NULL THEN now() < w.ends_at
      ELSE mod(p.elapsed, p.period) < extract(epoch FROM w.ends_at - w.starts_at)
           AND (w.repeat_until IS NULL
                OR now() - mod(p.elapsed, p.period)::float8 * interval '1 second'
                   <= w.repeat_until)
      END
"""
# The labels a window's matchers are compared with: an incident's labels, and its service
# (for alerts whose service came from the job label, and API alerts)
MATCHED = """
CASE WHEN {service} IS NULL THEN {labels}
     ELSE jsonb_build_object('service', {service}) || {labels} END
"""


def in_window(labels: str, service: str) -> str:
    """The id of a window in force that matches (NULL when none is). Whether any window is
    in force is read once per statement (an uncorrelated EXISTS), the match per row only
    when one is."""
    matched = MATCHED.format(labels=labels, service=service).strip()
    return (
        f"CASE WHEN EXISTS ({WINDOWS_IN_FORCE}) THEN (SELECT min(f.id) FROM "
        f"({WINDOWS_IN_FORCE}) AS f WHERE ({matched}) @> f.matchers) END"
    )


INSERT = """
INSERT INTO __SCHEMA__.maintenance_windows
    (matchers, starts_at, ends_at, recurrence, repeat_until, comment, author)
VALUES ($1::jsonb, $2, $3, $4, $5, $6, $7)
RETURNING *
"""
DELETE = """
UPDATE __SCHEMA__.maintenance_windows
SET deleted_at = coalesce(deleted_at, now()), deleted_by = coalesce(deleted_by, $2)
WHERE id = $1 RETURNING *
"""
SELECT_ONE = "SELECT * FROM __SCHEMA__.maintenance_windows WHERE id = $1"
# windows that may still matter: not deleted and not over, or with a live silence
LIVE = """
SELECT * FROM __SCHEMA__.maintenance_windows
WHERE (deleted_at IS NULL AND (recurrence IS NOT NULL OR ends_at > now()))
   OR (silence_id IS NOT NULL AND silence_ends_at > now())
ORDER BY id
"""
LIST = Keyset(
    "SELECT * FROM __SCHEMA__.maintenance_windows",
    "starts_at",
    {"deleted": "(deleted_at IS NOT NULL) = $?"},
)
# a silence made for an occurrence: kept only if the window still wants it
SILENCED = """
UPDATE __SCHEMA__.maintenance_windows AS w
SET silence_id = t.silence_id, silence_starts_at = t.starts_at, silence_ends_at = t.ends_at,
    alertmanager_error = NULL
FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::text[])
     AS t(id, silence_id, starts_at, ends_at, previous)
WHERE w.id = t.id AND w.deleted_at IS NULL AND w.silence_id IS NOT DISTINCT FROM t.previous
RETURNING w.id
"""
EXPIRED = """
UPDATE __SCHEMA__.maintenance_windows AS w SET silence_ends_at = now(), alertmanager_error = NULL
FROM unnest($1::bigint[], $2::text[]) AS t(id, silence_id)
WHERE w.id = t.id AND w.silence_id = t.silence_id AND w.silence_ends_at > now()
"""
FAILED = """
UPDATE __SCHEMA__.maintenance_windows AS w SET alertmanager_error = t.error
FROM unnest($1::bigint[], $2::text[]) AS t(id, error)
WHERE w.id = t.id AND w.alertmanager_error IS DISTINCT FROM t.error
"""


def row_dict(record: Any) -> dict[str, Any]:
    """A window's row, its matchers decoded."""
    row = dict(record)
    if isinstance(row.get("matchers"), str):
        row["matchers"] = msgspec.json.decode(row["matchers"])
    return row


def window_of(row: dict[str, Any]) -> Window:
    """The domain's view of a row."""
    return Window(
        row["id"],
        row["matchers"],
        row["starts_at"],
        row["ends_at"],
        row["recurrence"],
        row["repeat_until"],
        row["deleted_at"] is not None,
    )


async def insert(
    db: Database,
    matchers: dict[str, str],
    starts_at: datetime,
    ends_at: datetime,
    recurrence: str | None,
    repeat_until: datetime | None,
    comment: str,
    author: str,
) -> dict[str, Any]:
    """Store a new window."""
    async with db.connection() as conn:
        record = await conn.fetchrow(
            db.sql(INSERT), msgspec.json.encode(matchers).decode(), starts_at, ends_at,
            recurrence, repeat_until, comment, author,
        )  # fmt: skip
    return row_dict(record)


async def delete(db: Database, window_id: int, by: str) -> dict[str, Any] | None:
    """Mark a window deleted (idempotent); None when there is no such window."""
    async with db.connection() as conn:
        record = await conn.fetchrow(db.sql(DELETE), window_id, by)
    return None if record is None else row_dict(record)


async def get(db: Database, window_id: int) -> dict[str, Any] | None:
    """One window."""
    async with db.connection() as conn:
        record = await conn.fetchrow(db.sql(SELECT_ONE), window_id)
    return None if record is None else row_dict(record)


async def live(db: Database) -> list[dict[str, Any]]:
    """Windows that are not over, or whose silence may be live."""
    async with db.connection() as conn:
        return [row_dict(r) for r in await conn.fetch(db.sql(LIVE))]


async def page(
    db: Database, deleted: bool | None, after: tuple[datetime, int] | None, limit: int
) -> list[dict[str, Any]]:
    """Windows newest first (by starts_at, id)."""
    return [row_dict(r) for r in await LIST.page(db, {"deleted": deleted}, after, limit)]


@dataclass
class Results:
    """Outcomes of silence calls for windows, stored together."""

    #: (window, silence, occurrence start, occurrence end, the silence it replaces)
    silenced: list[tuple[int, str, datetime, datetime, str | None]]
    expired: list[tuple[int, str]]
    failed: list[tuple[int, str]]

    @classmethod
    def empty(cls) -> Results:
        """Nothing yet."""
        return cls([], [], [])


async def store(conn: Any, db: Database, results: Results) -> list[str]:
    """Store what the calls did; the silences no window wants any more (to be expired)."""
    unwanted: list[str] = []
    if results.silenced:
        columns = [list(c) for c in zip(*results.silenced, strict=True)]
        kept = {r["id"] for r in await conn.fetch(db.sql(SILENCED), *columns)}
        unwanted = [s for i, s, *_ in results.silenced if i not in kept]
    if results.expired:
        ids, silences = (list(c) for c in zip(*results.expired, strict=True))
        await conn.execute(db.sql(EXPIRED), ids, silences)
    if results.failed:
        ids, errors = (list(c) for c in zip(*results.failed, strict=True))
        await conn.execute(db.sql(FAILED), ids, [e[:1000] for e in errors])
    return unwanted


def windows(rows: Sequence[dict[str, Any]]) -> list[Window]:
    """The domain's view of rows."""
    return [window_of(r) for r in rows]
