"""Retention: partitions created ahead and dropped when expired, rows deleted (the leader's
job runs it in its fenced transaction; tests/features/test_leader.py covers the fencing)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from exporter.config import parse_config
from exporter.config.performance_logs import Retention
from exporter.storage import Database
from exporter.storage.retention import Pass, run_pass

PARTITIONS = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'monitoring.system_performance_logs'::regclass ORDER BY 1
"""


@pytest.fixture
async def database(writer_url: str) -> AsyncIterator[Database]:
    """Retention as the service runs it: as the writer-only login."""
    db = Database(writer_url, parse_config({}).database)
    await db.connect_forever()
    yield db
    await db.close()


async def run(database: Database, config: Retention, now: datetime | None = None) -> Pass:
    async with database.transaction() as conn:
        return await run_pass(conn, database, config, now)


def part(day: datetime) -> str:
    return f"system_performance_logs_p{day:%Y%m%d}"


async def test_a_pass_creates_partitions_ahead_and_drops_expired_ones(
    database: Database, db: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(days=20)
    # older than the 14 days of the stored policy: ensure_performance_log_partitions would not
    # create it, so it is created here by hand
    await db.execute(
        f"CREATE TABLE monitoring.{part(old)} PARTITION OF monitoring.system_performance_logs"
        f" FOR VALUES FROM ('{old:%Y-%m-%d}+00') TO ('{old + timedelta(days=1):%Y-%m-%d}+00')"
    )
    await db.execute(
        "INSERT INTO monitoring.system_performance_logs (operation_type, duration_ms, status,"
        " recorded_at) VALUES ('old', 1, 'success', $1), ('new', 1, 'success', $2)",
        old,
        now,
    )
    config = parse_config({"retention": {"performance_logs": "14d"}}).retention
    done = await run(database, config, now)
    assert done.locked and done.partitions_dropped == 1
    names = [r["relname"] for r in await db.fetch(PARTITIONS)]
    assert part(old) not in names
    assert part(now - timedelta(days=14)) in names and part(now + timedelta(days=7)) in names
    assert [
        r["operation_type"]
        for r in await db.fetch("SELECT operation_type FROM monitoring.system_performance_logs")
    ] == ["new"]
    again = await run(database, config, now)
    assert (again.partitions_created, again.partitions_dropped) == (0, 0)


async def test_a_pass_deletes_expired_rows_of_the_other_tables(
    database: Database, db: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    await db.execute(
        "INSERT INTO monitoring.system_health_metrics (service_name, metric_type, value, status,"
        " recorded_at) VALUES ('a', 'cpu', 1, 'healthy', $1), ('a', 'cpu', 1, 'healthy', $2)",
        now - timedelta(days=40),
        now,
    )
    await db.execute(
        "INSERT INTO monitoring.system_alerts (fingerprint, alert_type, severity, status, title,"
        " source, starts_at, resolved_at, updated_at) VALUES"
        " ('f1', 'security', 'low', 'resolved', 't', 'api', $1, $1, $1),"
        " ('f2', 'security', 'low', 'active', 't', 'api', $1, NULL, $1)",
        now - timedelta(days=400),
    )
    done = await run(database, parse_config({}).retention, now)
    assert done.rows_deleted == {
        "system_health_metrics": 1,
        "data_quality_indicators": 0,
        "system_alerts": 1,
        "idempotency_keys": 0,
        "change_log": 0,
        "health_series": 0,
    }
    assert await db.fetchval("SELECT count(*) FROM monitoring.system_health_metrics") == 1
    assert await db.fetchval("SELECT fingerprint FROM monitoring.system_alerts") == "f2"


async def test_idempotency_keys_live_at_least_a_day_and_at_most_the_configured_number(
    database: Database, db: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    await db.execute(
        "INSERT INTO monitoring.idempotency_keys (principal, key, route, request_hash, status,"
        " response, created_at) SELECT 'p', 'k' || i, 'POST /x', '', 200, '', $1::timestamptz - i * interval"
        " '1 second' FROM generate_series(1, 12000) AS i",
        now - timedelta(hours=1),
    )
    await db.execute(
        "INSERT INTO monitoring.idempotency_keys (principal, key, route, request_hash, status,"
        " response, created_at) VALUES ('p', 'old', 'POST /x', '', 200, '', $1)",
        now - timedelta(hours=25),
    )
    config = parse_config({"retention": {"idempotency_max_keys": 10000}}).retention
    done = await run(database, config, now)
    assert done.rows_deleted is not None
    assert done.rows_deleted["idempotency_keys"] == 1  # the day-old one
    # past the bound the oldest go, even within the day: 10,000 stay, the newest
    assert await db.fetchval("SELECT count(*) FROM monitoring.idempotency_keys") == 10000
    assert (
        await db.fetchval(
            "SELECT count(*) FROM monitoring.idempotency_keys WHERE key IN ('k1', 'k10000')"
        )
        == 2
    )
