"""Performance-log rollups (migration 9): the summary of a window, and their retention.

The rollups are kept by a statement trigger on ``system_performance_logs``, in the ingest's own
transaction, per minute and per hour, operation and status (with a latency sketch each). A
window's summary merges, in PostgreSQL, the hour rows of its whole hours, the minute rows of
its other whole minutes, and the raw rows of the partial minutes at its two edges, so counts
are exact for any window and percentiles within the sketch's 1 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from exporter.storage.database import Database

# $1 since, $2 until, $3 operation_type or NULL, $4 operation_name or NULL ('' for none),
# $5 limit. The raw edges are [since, first whole minute) and [last whole minute, until), the
# same split as performance_rollups(), so no record is counted twice or missed.
SUMMARY = """
WITH rolled AS MATERIALIZED (
    SELECT operation_type, operation_name, status, n, sum_ms, min_ms, max_ms, keys, counts
    FROM __SCHEMA__.performance_rollups($1, $2)
    WHERE ($3::text IS NULL OR operation_type = $3) AND ($4::text IS NULL OR operation_name = $4)
), raw AS MATERIALIZED (
    SELECT operation_type, coalesce(operation_name, '') AS operation_name, status,
           __SCHEMA__.performance_sketch_key(duration_ms) AS k, count(*) AS n,
           sum(duration_ms) AS sum_ms, min(duration_ms) AS min_ms, max(duration_ms) AS max_ms
    FROM __SCHEMA__.system_performance_logs
    WHERE ((recorded_at >= $1 AND recorded_at < least($2, __SCHEMA__.performance_ceil($1, 60)))
           OR (recorded_at >= greatest(__SCHEMA__.performance_ceil($1, 60),
                                       __SCHEMA__.performance_floor($2, 60))
               AND recorded_at < $2))
      AND ($3::text IS NULL OR operation_type = $3)
      AND ($4::text IS NULL OR coalesce(operation_name, '') = $4)
    GROUP BY 1, 2, 3, 4
), ops AS MATERIALIZED (
    -- a number per operation: grouping a day's buckets by it, not by two texts, saves a third
    SELECT operation_type, operation_name,
           row_number() OVER (ORDER BY operation_type, operation_name)::integer AS op
    FROM (SELECT operation_type, operation_name FROM rolled
          UNION
          SELECT operation_type, operation_name FROM raw) AS x
), totals AS (
    SELECT operation_type, operation_name, sum(n)::bigint AS count,
           coalesce(sum(n) FILTER (WHERE status = 'error'), 0)::bigint AS errors,
           coalesce(sum(n) FILTER (WHERE status = 'timeout'), 0)::bigint AS timeouts,
           sum(sum_ms) AS sum_ms, min(min_ms) AS min_ms, max(max_ms) AS max_ms
    FROM (SELECT operation_type, operation_name, status, n, sum_ms, min_ms, max_ms FROM rolled
          UNION ALL
          SELECT operation_type, operation_name, status, n, sum_ms, min_ms, max_ms FROM raw) AS x
    GROUP BY 1, 2
    ORDER BY count DESC, operation_type, operation_name
    LIMIT $5
), buckets AS (
    SELECT op, k, sum(c)::bigint AS c
    -- unnest in the select list (ProjectSet) streams; in FROM it would fill a tuplestore per
    -- row, a fifth of the summary's time over a day
    FROM (SELECT o.op, unnest(r.keys) AS k, unnest(r.counts) AS c
          FROM rolled AS r JOIN ops AS o USING (operation_type, operation_name)
          UNION ALL
          SELECT o.op, w.k, w.n FROM raw AS w JOIN ops AS o USING (operation_type, operation_name)
         ) AS y
    GROUP BY 1, 2
)
SELECT t.operation_type, t.operation_name, t.count, t.errors, t.timeouts, t.sum_ms, t.min_ms,
       t.max_ms, s.keys, s.counts
FROM totals AS t
JOIN ops AS o USING (operation_type, operation_name)
JOIN (SELECT op, array_agg(k ORDER BY k) AS keys, array_agg(c ORDER BY k) AS counts
      FROM buckets GROUP BY 1) AS s USING (op)
ORDER BY t.count DESC, t.operation_type, t.operation_name
"""

PRUNE = "SELECT table_name, deleted FROM __SCHEMA__.prune_performance_rollups($1, $2)"


@dataclass(frozen=True, slots=True)
class Merged:
    """One operation over a window: exact counts and extremes, and its merged sketch."""

    operation_type: str
    operation_name: str | None
    count: int
    errors: int
    timeouts: int
    sum_ms: float
    min_ms: float
    max_ms: float
    keys: list[int]
    counts: list[int]


async def summarise(
    db: Database,
    since: datetime,
    until: datetime,
    operation_type: str | None,
    operation_name: str | None,
    limit: int,
) -> list[Merged]:
    """Per operation over [since, until), the busiest first, at most ``limit`` of them."""
    async with db.connection() as conn:
        rows = await conn.fetch(
            db.sql(SUMMARY), since, until, operation_type, operation_name, limit
        )
    return [_merged(r) for r in rows]


def _merged(r: asyncpg.Record) -> Merged:
    return Merged(
        r["operation_type"], r["operation_name"] or None, r["count"], r["errors"],
        r["timeouts"], r["sum_ms"], r["min_ms"], r["max_ms"], r["keys"], r["counts"],
    )  # fmt: skip


async def prune(
    conn: asyncpg.Connection, db: Database, now: datetime, minutes: timedelta, hours: timedelta
) -> dict[str, int]:
    """Remove minute and hour rollups past their retention (clamped by the stored policy)."""
    rows = await conn.fetch(db.sql(PRUNE), now - minutes, now - hours)
    return {r["table_name"]: r["deleted"] for r in rows}
