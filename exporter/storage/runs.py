"""scheduled_runs: when each scheduled job last ran and how it went."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from exporter.storage.database import Database

LAST_STARTED = "SELECT last_started_at FROM __SCHEMA__.scheduled_runs WHERE job = $1"

RECORD = """
INSERT INTO __SCHEMA__.scheduled_runs AS r
    (job, last_started_at, last_finished_at, last_success_at, last_duration_seconds, last_error,
     runs, failures, epoch, replica)
VALUES ($1, $2, $3::timestamptz, CASE WHEN $5::text IS NULL THEN $3::timestamptz END, $4, $5, 1,
        CASE WHEN $5::text IS NULL THEN 0 ELSE 1 END, $6, $7)
ON CONFLICT (job) DO UPDATE SET
    last_started_at = excluded.last_started_at,
    last_finished_at = excluded.last_finished_at,
    last_success_at = COALESCE(excluded.last_success_at, r.last_success_at),
    last_duration_seconds = excluded.last_duration_seconds,
    last_error = excluded.last_error,
    runs = r.runs + 1,
    failures = r.failures + excluded.failures,
    epoch = excluded.epoch,
    replica = excluded.replica
"""

ALL = """
SELECT job, last_started_at, last_finished_at, last_success_at, last_duration_seconds,
       last_error, runs, failures, replica
FROM __SCHEMA__.scheduled_runs ORDER BY job
"""


@dataclass(frozen=True)
class JobRun:
    """The last run of a job, as every replica sees it."""

    job: str
    last_started_at: datetime
    last_finished_at: datetime
    last_success_at: datetime | None
    last_duration_seconds: float
    last_error: str | None
    runs: int
    failures: int
    replica: str

    @property
    def ok(self) -> bool:
        """Whether the last run succeeded."""
        return self.last_error is None


async def last_started(db: Database, job: str) -> datetime | None:
    """When ``job`` last started, by any replica (None: never)."""
    async with db.connection() as conn:
        at: datetime | None = await conn.fetchval(db.sql(LAST_STARTED), job)
    return at


async def record(
    conn: asyncpg.Connection,
    db: Database,
    job: str,
    *,
    started_at: datetime,
    finished_at: datetime,
    error: str | None,
    epoch: int,
    replica: str,
) -> None:
    """Record a run in the caller's (fenced) transaction."""
    seconds = (finished_at - started_at).total_seconds()
    await conn.execute(db.sql(RECORD), job, started_at, finished_at, seconds, error, epoch, replica)


async def all_runs(db: Database) -> list[JobRun]:
    """The last run of every job."""
    async with db.connection() as conn:
        rows = await conn.fetch(db.sql(ALL))
    return [JobRun(**dict(r)) for r in rows]
