"""system_performance_logs: the batch insert behind the group commit.

Records of concurrent requests are gathered into shared batches (``group_commit``) and
written with one ``INSERT … SELECT FROM unnest(…)`` per batch. COPY would be faster still,
but PostgreSQL refuses ``COPY FROM`` into a table with row level security (``COPY FROM not
supported with row-level security``), and RLS is forced on every table here; see
tests/test_performance_logs_storage.py which checks that. Every request waits for the commit
of its batch; a request's records are never split across batches.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from exporter.storage.database import Database

log = logging.getLogger(__name__)

COLUMNS = (
    "operation_type",
    "operation_name",
    "duration_ms",
    "memory_usage_bytes",
    "cpu_usage_percent",
    "status",
    "error_message",
    "user_id",
    "request_details",
    "recorded_at",
)

INSERT = """
INSERT INTO __SCHEMA__.system_performance_logs
    (operation_type, operation_name, duration_ms, memory_usage_bytes, cpu_usage_percent,
     status, error_message, user_id, request_details, recorded_at)
SELECT t, n, d, m, c, s, e, u, coalesce(r, '{}')::jsonb, coalesce(a, $11)
FROM unnest($1::text[], $2::text[], $3::float8[], $4::int8[], $5::float8[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::timestamptz[])
     AS x(t, n, d, m, c, s, e, u, r, a)
"""

ENSURE_PARTITIONS = "SELECT __SCHEMA__.ensure_performance_log_partitions($1::date, $2::date)"


@dataclass(slots=True)
class Rows:
    """Records as columns, in the order of the INSERT's arrays."""

    operation_type: list[str] = field(default_factory=list)
    operation_name: list[str | None] = field(default_factory=list)
    duration_ms: list[float] = field(default_factory=list)
    memory_usage_bytes: list[int | None] = field(default_factory=list)
    cpu_usage_percent: list[float | None] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    error_message: list[str | None] = field(default_factory=list)
    user_id: list[str | None] = field(default_factory=list)
    request_details: list[str | None] = field(default_factory=list)  # None: {}
    recorded_at: list[datetime | None] = field(default_factory=list)  # None: now

    def __len__(self) -> int:
        return len(self.status)

    def extend(self, other: Rows) -> None:
        """Append another set of rows."""
        for name in COLUMNS:
            getattr(self, name).extend(getattr(other, name))

    def arrays(self, now: datetime) -> list[Any]:
        """The INSERT's parameters.

        A column that is all NULL (None means the default for request_details and recorded_at,
        ``{}`` and the commit time) is sent
        as one NULL instead of an array: unnest pads it with NULLs, and asyncpg's per-element
        type checks are a large part of the cost of a batch.
        """
        args: list[Any] = []
        for name in COLUMNS:
            column = getattr(self, name)
            args.append(column if any(v is not None for v in column) else None)
        args.append(now)
        return args


# Python objects held per queued row beyond the request body's bytes (lists, str, datetime)
ROW_OVERHEAD = 400


def _missing_partition(exc: BaseException) -> bool:
    return isinstance(exc, asyncpg.PostgresError) and "no partition" in str(exc)


async def insert_batch(conn: asyncpg.Connection, db: Database, batch: Sequence[Rows]) -> list[None]:
    """Insert the records of several requests with one statement (its own transaction)."""
    if len(batch) == 1:
        rows = batch[0]
    else:
        rows = Rows()
        for item in batch:
            rows.extend(item)
    sql = db.sql(INSERT)
    now = datetime.now(UTC)
    try:
        # one statement outside an explicit transaction is its own atomic transaction
        await conn.execute(sql, *rows.arrays(now))
    except asyncpg.PostgresError as exc:
        if not _missing_partition(exc):
            raise
        # partition upkeep has not caught up (e.g. it runs on a leader that is starting)
        days = [(at or now).date() for at in rows.recorded_at]
        await conn.fetchval(db.sql(ENSURE_PARTITIONS), min(days), max(days))
        await conn.execute(sql, *rows.arrays(now))
    return [None] * len(batch)
