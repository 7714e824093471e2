"""Retention and partition upkeep, safe with several replicas running at once.

Each pass runs in one transaction that first takes a transaction-level advisory lock with
``pg_try_advisory_xact_lock``: the replica that gets it does the work, the others skip the
pass (the lock is released by the commit, even if the replica dies half-way).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from exporter.config.performance_logs import Retention
from exporter.storage.database import Database
from exporter.storage.errors import StorageUnavailable

log = logging.getLogger(__name__)

# Any constant works; it only has to be the same for every replica (and differ from the
# migration lock).
LOCK_KEY = 0x6D6F6E7265746E

TRY_LOCK = "SELECT pg_try_advisory_xact_lock($1)"
ENSURE = "SELECT {schema}.ensure_performance_log_partitions($1::date, $2::date)"
DROP = "SELECT {schema}.drop_performance_log_partitions($1::date)"
APPLY = "SELECT table_name, deleted FROM {schema}.apply_retention($1, $2, $3)"

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


async def run_pass(db: Database, retention: Retention, now: datetime | None = None) -> Pass:
    """Create partitions ahead, drop expired ones and delete expired rows, under the lock."""
    now = now or datetime.now(UTC)
    schema = f'"{db.schema}"'
    today = now.astimezone(UTC).date()
    keep_from = horizon(now, retention.performance_logs.seconds)
    async with db.transaction() as conn:
        if not await conn.fetchval(TRY_LOCK, LOCK_KEY):
            return Pass(locked=False)
        created = await conn.fetchval(
            ENSURE.format(schema=schema), keep_from, today + timedelta(days=DAYS_AHEAD)
        )
        dropped = await conn.fetchval(DROP.format(schema=schema), keep_from)
        rows = await conn.fetch(
            APPLY.format(schema=schema),
            now - timedelta(seconds=retention.health_metrics.seconds),
            now - timedelta(seconds=retention.quality_indicators.seconds),
            now - timedelta(seconds=retention.resolved_alerts.seconds),
        )
    return Pass(True, created, dropped, {r["table_name"]: r["deleted"] for r in rows})


async def run_forever(db: Database, retention: Retention) -> None:
    """A pass at start and then every ``retention.interval`` (at most hourly, for partitions)."""
    await db.wait_ready()
    interval = min(retention.interval.seconds, 3600.0) or 3600.0
    while True:
        try:
            done = await run_pass(db, retention)
        except StorageUnavailable as exc:
            log.warning("retention pass skipped: storage unavailable", extra={"error": str(exc)})
            await asyncio.sleep(min(interval, 30.0))
            continue
        except Exception:
            # a failing pass (e.g. a lock timeout) must not end retention for good
            log.exception("retention pass failed")
            await asyncio.sleep(min(interval, 60.0))
            continue
        if done.locked:
            log.info(
                "retention pass done",
                extra={
                    "partitions_created": done.partitions_created,
                    "partitions_dropped": done.partitions_dropped,
                    "rows_deleted": done.rows_deleted,
                },
            )
        await asyncio.sleep(interval)
