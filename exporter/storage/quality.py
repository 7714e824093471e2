"""The ``data_quality_indicators`` table: bulk inserts, filtered pages, latest per member."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

COLUMNS = (
    "id, source, dataset, dimension, score, total_records, valid_records, status, "
    "warning_level, critical_level, check_name, issues, measured_at, created_at"
)

# One statement for a whole batch; ``measured_at`` NULL means "now" (the commit's clock).
INSERT = """
INSERT INTO {schema}.data_quality_indicators
    (source, dataset, dimension, score, total_records, valid_records, status,
     warning_level, critical_level, check_name, issues, measured_at)
SELECT source, dataset, dimension, score, total_records, valid_records, status,
       warning_level, critical_level, check_name, issues::jsonb, COALESCE(measured_at, now())
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::int8[], $6::int8[],
            $7::text[], $8::float8[], $9::float8[], $10::text[], $11::text[],
            $12::timestamptz[])
     AS t(source, dataset, dimension, score, total_records, valid_records, status,
          warning_level, critical_level, check_name, issues, measured_at)
RETURNING {columns}
"""

SELECT_PAGE = """
SELECT {columns} FROM {schema}.data_quality_indicators
WHERE ($1::text IS NULL OR source = $1)
  AND ($2::text IS NULL OR dataset = $2)
  AND ($3::text IS NULL OR dimension = $3)
  AND ($4::timestamptz IS NULL OR measured_at >= $4)
  AND ($5::timestamptz IS NULL OR measured_at < $5)
  AND ($6::timestamptz IS NULL OR (measured_at, id) < ($6, $7::bigint))
ORDER BY measured_at DESC, id DESC
LIMIT $8
"""

# The newest row of every member: a configured check, or a pushed (source, dataset, dimension).
SELECT_LATEST = """
SELECT DISTINCT ON (source, dataset, dimension, COALESCE(check_name, ''))
       source, dataset, dimension, check_name, score, warning_level, critical_level, measured_at
FROM {schema}.data_quality_indicators
WHERE ($1::timestamptz IS NULL OR measured_at >= $1)
ORDER BY source, dataset, dimension, COALESCE(check_name, ''), measured_at DESC, id DESC
"""


@dataclass(frozen=True, slots=True)
class NewIndicator:
    """A row to insert."""

    source: str
    dataset: str
    dimension: str
    score: float | None
    total_records: int | None
    valid_records: int | None
    status: str
    warning_level: float
    critical_level: float
    check_name: str | None
    issues_json: str
    measured_at: datetime | None


def _table(schema: str, sql: str) -> str:
    return sql.format(schema=f'"{schema}"', columns=COLUMNS)


async def insert(
    conn: asyncpg.Connection, schema: str, rows: Sequence[NewIndicator]
) -> list[asyncpg.Record]:
    """Insert every row in one statement; return the stored rows in order."""
    cols: list[list[Any]] = [[] for _ in range(12)]
    for r in rows:
        values = (
            r.source, r.dataset, r.dimension, r.score, r.total_records, r.valid_records,
            r.status, r.warning_level, r.critical_level, r.check_name, r.issues_json,
            r.measured_at,
        )  # fmt: skip
        for col, value in zip(cols, values, strict=True):
            col.append(value)
    result: list[asyncpg.Record] = await conn.fetch(_table(schema, INSERT), *cols)
    return result


async def page(
    conn: asyncpg.Connection,
    schema: str,
    *,
    source: str | None,
    dataset: str | None,
    dimension: str | None,
    since: datetime | None,
    until: datetime | None,
    after: tuple[datetime, int] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """One page, newest first, after the keyset position ``after``."""
    at, row_id = after if after is not None else (None, None)
    result: list[asyncpg.Record] = await conn.fetch(
        _table(schema, SELECT_PAGE), source, dataset, dimension, since, until, at, row_id, limit
    )
    return result


async def latest(
    conn: asyncpg.Connection, schema: str, since: datetime | None = None
) -> list[asyncpg.Record]:
    """The newest row of every member (optionally only those measured since ``since``)."""
    result: list[asyncpg.Record] = await conn.fetch(_table(schema, SELECT_LATEST), since)
    return result
