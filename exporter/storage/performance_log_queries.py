"""Reading system_performance_logs: filtered pages and per-operation summaries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from exporter.domain.performance_log import TraceExemplar
from exporter.storage.database import Database
from exporter.storage.keyset import Keyset

LIST = Keyset(
    """SELECT id, operation_type, operation_name, duration_ms, memory_usage_bytes,
       cpu_usage_percent, status, error_message, user_id, request_details, recorded_at,
       created_at
FROM __SCHEMA__.system_performance_logs""",
    "recorded_at",
    {
        "operation_type": "operation_type = $?",
        "operation_name": "operation_name = $?",
        "status": "status = $?",
        "user_id": "user_id = $?",
        "min_duration_ms": "duration_ms >= $?::float8",
        "since": "recorded_at >= $?",
        "until": "recorded_at < $?",
    },
)

SUMMARY = """
SELECT operation_type, operation_name, count(*) AS count,
       count(*) FILTER (WHERE status = 'error') AS errors,
       count(*) FILTER (WHERE status = 'timeout') AS timeouts,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99_ms,
       avg(duration_ms) AS avg_ms,
       max(duration_ms) AS max_ms
FROM {schema}.system_performance_logs
WHERE {where}
GROUP BY operation_type, operation_name
ORDER BY count(*) DESC, operation_type, operation_name
LIMIT {limit}
"""

# Filter fragments by name; values always travel as $n parameters.
_FILTERS = {
    "operation_type": "operation_type = ${}",
    "operation_name": "operation_name = ${}",
    "status": "status = ${}",
    "user_id": "user_id = ${}",
    "min_duration_ms": "duration_ms >= ${}::float8",
    "since": "recorded_at >= ${}",
    "until": "recorded_at < ${}",
}


def _where(filters: dict[str, Any]) -> tuple[list[str], list[Any]]:
    clauses, args = ["true"], []
    for name, value in filters.items():
        if value is not None:
            args.append(value)
            clauses.append(_FILTERS[name].format(len(args)))
    return clauses, args


async def select_logs(
    db: Database,
    filters: dict[str, Any],
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """Records matching ``filters``, newest first, after a keyset position."""
    return await LIST.page(db, filters, after, limit)


async def summarise(db: Database, filters: dict[str, Any], limit: int) -> list[asyncpg.Record]:
    """Count, error rate and duration percentiles per operation over the filtered window."""
    clauses, args = _where(filters)
    args.append(limit)
    sql = SUMMARY.format(
        schema=f'"{db.schema}"', where=" AND ".join(clauses), limit=f"${len(args)}"
    )
    async with db.connection() as conn:
        rows: list[asyncpg.Record] = await conn.fetch(sql, *args)
    return rows


async def count_logs(db: Database) -> int:
    """How many records the table holds (for demo seeding)."""
    async with db.connection() as conn:
        n: int = await conn.fetchval(
            f'SELECT count(*) FROM (SELECT 1 FROM "{db.schema}".system_performance_logs'
            " LIMIT 1) AS x"
        )
    return n


# the shards added up; of their exemplars, the latest
HISTOGRAM = """
SELECT operation_type, status, bucket, sum(n)::float8 AS n, sum(sum_seconds) AS sum_seconds,
       (array_agg(exemplar_trace_id ORDER BY exemplar_at DESC)
            FILTER (WHERE exemplar_at IS NOT NULL))[1] AS trace_id,
       (array_agg(exemplar_seconds ORDER BY exemplar_at DESC)
            FILTER (WHERE exemplar_at IS NOT NULL))[1] AS trace_seconds,
       max(exemplar_at) AS trace_at
FROM __SCHEMA__.operation_histogram GROUP BY 1, 2, 3
"""


async def histogram(
    db: Database,
) -> tuple[list[tuple[str, str, int, float, float]], dict[tuple[str, str, int], TraceExemplar]]:
    """(operation_type, status, bucket, count, sum of seconds) of every record ever stored,
    and the latest record naming a trace, per bucket."""
    async with db.connection() as conn:
        rows = await conn.fetch(db.sql(HISTOGRAM))
    counts = [
        (r["operation_type"], r["status"], r["bucket"], r["n"], r["sum_seconds"]) for r in rows
    ]
    exemplars = {
        (r["operation_type"], r["status"], r["bucket"]): TraceExemplar(
            r["trace_id"], r["trace_seconds"], r["trace_at"]
        )
        for r in rows
        if r["trace_at"] is not None
    }
    return counts, exemplars
