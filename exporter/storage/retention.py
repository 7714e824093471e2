"""Retention and partition upkeep, safe with several replicas running at once.

A pass runs as the leader's scheduled job, in its fenced transaction: one replica at a time,
and a deposed leader's pass never commits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import asyncpg

from exporter.config.performance_logs import Retention
from exporter.storage.database import Database

log = logging.getLogger(__name__)

ENSURE = "SELECT __SCHEMA__.ensure_performance_log_partitions($1::date, $2::date)"
DROP = "SELECT __SCHEMA__.drop_performance_log_partitions($1::date)"
APPLY = "SELECT table_name, deleted FROM __SCHEMA__.apply_retention($1, $2, $3)"
PRUNE = "SELECT table_name, deleted FROM __SCHEMA__.prune_replica_state($1, $2)"
PRUNE_CHANGES = "SELECT 'change_log' AS table_name, __SCHEMA__.prune_change_log($1) AS deleted"

# Partitions are created this many days ahead, so a missed pass or two never matters.
DAYS_AHEAD = 7


@dataclass(frozen=True)
class Pass:
    """What one retention pass did (``locked`` is False when another replica held the lock)."""

    locked: bool
    partitions_created: int = 0
    partitions_dropped: int = 0
    rows_deleted: dict[str, int] | None = None


def horizon(now: datetime, keep_seconds: float) -> date:
    """The first day that must be kept: partitions of earlier days hold only expired rows."""
    return (now - timedelta(seconds=keep_seconds)).astimezone(UTC).date()


async def run_pass(
    conn: asyncpg.Connection, db: Database, retention: Retention, now: datetime | None = None
) -> Pass:
    """Create partitions ahead, drop expired ones and delete expired rows, in the caller's
    transaction (the leader's fenced one: no other replica runs a pass meanwhile)."""
    now = now or datetime.now(UTC)
    today = now.astimezone(UTC).date()
    keep_from = horizon(now, retention.performance_logs.seconds)
    created = await conn.fetchval(db.sql(ENSURE), keep_from, today + timedelta(days=DAYS_AHEAD))
    dropped = await conn.fetchval(db.sql(DROP), keep_from)
    rows = await conn.fetch(
        db.sql(APPLY),
        now - timedelta(seconds=retention.health_metrics.seconds),
        now - timedelta(seconds=retention.quality_indicators.seconds),
        now - timedelta(seconds=retention.resolved_alerts.seconds),
    )
    rows += await conn.fetch(
        db.sql(PRUNE),
        timedelta(seconds=retention.idempotency_keys.seconds),
        retention.idempotency_max_keys,
    )
    rows += await conn.fetch(db.sql(PRUNE_CHANGES), timedelta(seconds=retention.change_log.seconds))
    done = Pass(True, created, dropped, {r["table_name"]: r["deleted"] for r in rows})
    log.info(
        "retention pass done",
        extra={
            "partitions_created": done.partitions_created,
            "partitions_dropped": done.partitions_dropped,
            "rows_deleted": done.rows_deleted,
        },
    )
    return done
