"""The ``data_quality_indicators`` table: bulk inserts, filtered pages, latest per member."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from exporter.storage.database import Database
from exporter.storage.keyset import Keyset

COLUMNS = (
    "id, source, dataset, dimension, score, total_records, valid_records, status, "
    "warning_level, critical_level, check_name, issues, measured_at, created_at"
)

# One statement for a whole batch; ``measured_at`` NULL means "now" (the commit's clock).
INSERT = (
    """
INSERT INTO __SCHEMA__.data_quality_indicators
    (source, dataset, dimension, score, total_records, valid_records, status,
     warning_level, critical_level, check_name, issues, measured_at)
SELECT source, dataset, dimension, score, total_records, valid_records, status,
       warning_level, critical_level, check_name, issues::jsonb, COALESCE(measured_at, now())
FROM unnest($1::text[], $2::text[], $3::text[], $4::float8[], $5::int8[], $6::int8[],
            $7::text[], $8::float8[], $9::float8[], $10::text[], $11::text[],
            $12::timestamptz[])
     AS t(source, dataset, dimension, score, total_records, valid_records, status,
          warning_level, critical_level, check_name, issues, measured_at)
RETURNING """
    + COLUMNS
    + """
"""
)

# Creating series is rare; serialising it keeps the cap exact across replicas.
NEW_SERIES_LOCK = "SELECT pg_advisory_xact_lock(7236830394101867889)"
# a pushed member counts for the cap while it is exported (within the TTL); checks always
LIVE_KEYS = """
SELECT DISTINCT source, dataset, dimension FROM __SCHEMA__.quality_series
WHERE check_name <> '' OR updated_at > now() - $1 * interval '1 second'
"""

MEMBER_COLUMNS = (
    "id, source, dataset, dimension, check_name, score, status, warning_level, critical_level,"
    " measured_at, updated_at, version"
)
MEMBERS = f"""
SELECT {MEMBER_COLUMNS} FROM __SCHEMA__.quality_series
WHERE $1::timestamptz IS NULL OR measured_at >= $1
"""
MEMBERS_BY_IDS = (
    f"SELECT {MEMBER_COLUMNS} FROM __SCHEMA__.quality_series WHERE id = ANY($1::bigint[])"
)


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


@dataclass(frozen=True, slots=True)
class Member:
    """The latest measurement of one scoreboard member, as stored in quality_series."""

    id: int
    source: str
    dataset: str
    dimension: str
    check_name: str
    score: float | None
    status: str
    warning_level: float | None
    critical_level: float | None
    measured_at: datetime
    #: when the member was last written (a pushed member is exported for the TTL after it)
    updated_at: datetime
    version: int


class QualitySeriesLimit(Exception):
    """A push would create more quality series than the cap allows."""

    def __init__(self, cap: int, current: int, new: int) -> None:
        super().__init__(
            f"monitoring_data_quality_score would exceed {cap} series "
            f"({current} exist, {new} new); nothing was stored"
        )


async def insert(
    conn: asyncpg.Connection,
    db: Database,
    rows: Sequence[NewIndicator],
    *,
    cap: tuple[int, float] | None = None,
) -> list[asyncpg.Record]:
    """Insert measurements in the caller's transaction (a trigger makes each its member's
    latest in quality_series).

    With ``cap`` (at most this many series, exported for this many seconds), raises
    QualitySeriesLimit (and the caller rolls back) when the rows would create more
    (source, dataset, dimension) series than that.
    """
    if cap is not None:
        keys = {(r.source, r.dataset, r.dimension) for r in rows}
        await conn.execute(NEW_SERIES_LOCK)
        live = {tuple(r) for r in await conn.fetch(db.sql(LIVE_KEYS), cap[1])}
        fresh = keys - live
        if fresh and len(live) + len(fresh) > cap[0]:
            raise QualitySeriesLimit(cap[0], len(live), len(fresh))
    cols: list[list[Any]] = [[] for _ in range(12)]
    for r in rows:
        values = (
            r.source, r.dataset, r.dimension, r.score, r.total_records, r.valid_records,
            r.status, r.warning_level, r.critical_level, r.check_name, r.issues_json,
            r.measured_at,
        )  # fmt: skip
        for col, value in zip(cols, values, strict=True):
            col.append(value)
    stored: list[asyncpg.Record] = await conn.fetch(db.sql(INSERT), *cols)
    return stored


LIST = Keyset(
    f"SELECT {COLUMNS} FROM __SCHEMA__.data_quality_indicators",
    "measured_at",
    {
        "source": "source = $?",
        "dataset": "dataset = $?",
        "dimension": "dimension = $?",
        "since": "measured_at >= $?",
        "until": "measured_at < $?",
    },
)


async def page(
    db: Database, filters: dict[str, Any], after: tuple[datetime, int] | None, limit: int
) -> list[Any]:
    """One page, newest first, after the keyset position ``after``."""
    return await LIST.page(db, filters, after, limit)


async def members(db: Database, since: datetime | None = None) -> list[Member]:
    """The latest measurement of every member (optionally only those measured since)."""
    async with db.connection() as conn:
        rows = await conn.fetch(db.sql(MEMBERS), since)
    return [Member(**dict(r)) for r in rows]


async def members_by_ids(db: Database, ids: Sequence[int]) -> list[Member]:
    """Some members' latest measurements (after a notification named them)."""
    async with db.connection() as conn:
        rows = await conn.fetch(db.sql(MEMBERS_BY_IDS), list(ids))
    return [Member(**dict(r)) for r in rows]
