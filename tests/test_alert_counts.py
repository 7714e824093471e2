"""system_alert_counts: the totals the triggers keep always equal counting the incidents."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from exporter.storage.migrate import migrate

TRUTH = "SELECT status, severity, count(*) FROM monitoring.system_alerts GROUP BY 1, 2"
KEPT = (
    "SELECT status, severity, sum(n)::bigint FROM monitoring.system_alert_counts"
    " GROUP BY 1, 2 HAVING sum(n) <> 0"
)
INSERT = """
INSERT INTO monitoring.system_alerts (fingerprint, starts_at, alert_type, severity, title, source)
SELECT $1 || g, now(), 'system_error', (ARRAY['low', 'medium', 'high', 'critical'])[1 + g % 4],
       'title', 'api'
FROM generate_series(1, $2) AS g
"""


async def kept_and_truth(db: asyncpg.Connection) -> tuple[dict[tuple[str, str], int], ...]:
    kept = {(r[0], r[1]): r[2] for r in await db.fetch(KEPT)}
    truth = {(r[0], r[1]): r[2] for r in await db.fetch(TRUTH)}
    return kept, truth


async def assert_exact(db: asyncpg.Connection) -> dict[tuple[str, str], int]:
    kept, truth = await kept_and_truth(db)
    assert kept == truth
    return kept


async def test_counts_follow_inserts_updates_rollbacks_retention_and_truncate(
    db: asyncpg.Connection,
) -> None:
    await db.execute(INSERT, "a", 8)
    assert await assert_exact(db) == {
        ("active", "low"): 2,
        ("active", "medium"): 2,
        ("active", "high"): 2,
        ("active", "critical"): 2,
    }
    await db.execute(
        "UPDATE monitoring.system_alerts SET status = 'acknowledged', acknowledged_at = now()"
        " WHERE severity = 'high'"
    )
    await db.execute("UPDATE monitoring.system_alerts SET severity = 'critical' WHERE id = 1")
    await db.execute("UPDATE monitoring.system_alerts SET title = 'no count moves'")
    # resolved 40 days ago and untouched since: the touch trigger would stamp updated_at now()
    # (retention needs both old, migration 5), so it is off for this one statement
    await db.execute("ALTER TABLE monitoring.system_alerts DISABLE TRIGGER system_alerts_touch")
    await db.execute(
        "UPDATE monitoring.system_alerts SET status = 'resolved', resolved_at = now() - interval"
        " '40 days', updated_at = now() - interval '40 days' WHERE severity = 'low'"
    )
    await db.execute("ALTER TABLE monitoring.system_alerts ENABLE TRIGGER system_alerts_touch")
    kept = await assert_exact(db)
    assert kept[("acknowledged", "high")] == 2 and kept[("resolved", "low")] == 2

    with pytest.raises(asyncpg.UniqueViolationError):
        async with db.transaction():
            await db.execute(INSERT, "b", 3)
            await db.execute(INSERT, "b", 1)  # the same key again: everything rolls back
    assert await assert_exact(db) == kept

    await db.execute(
        "UPDATE monitoring.retention_policy SET keep = '30 days' WHERE name = 'resolved_alerts'"
    )
    deleted = await db.fetch(
        "SELECT * FROM monitoring.apply_retention(now(), now(), now() - interval '30 days')"
    )
    assert {r["table_name"]: r["deleted"] for r in deleted}["system_alerts"] == 2
    kept = await assert_exact(db)
    assert ("resolved", "low") not in kept

    await db.execute("TRUNCATE monitoring.system_alerts CASCADE")
    assert await assert_exact(db) == {}


async def test_concurrent_writers_keep_exact_totals(database_url: str) -> None:
    conns = [await asyncpg.connect(database_url) for _ in range(4)]
    try:

        async def writer(i: int, conn: asyncpg.Connection) -> None:
            for round_ in range(25):
                async with conn.transaction():
                    await conn.execute(INSERT, f"w{i}-{round_}-", 10)
                    await conn.execute(
                        "UPDATE monitoring.system_alerts SET status = 'acknowledged',"
                        " acknowledged_at = now() WHERE fingerprint LIKE $1 AND severity IN ('high', 'critical')",
                        f"w{i}-{round_}-%",
                    )

        await asyncio.wait_for(
            asyncio.gather(*(writer(i, c) for i, c in enumerate(conns))), timeout=60
        )
        kept = await assert_exact(conns[0])
        assert sum(kept.values()) == 4 * 25 * 10
        assert kept[("acknowledged", "critical")] == 4 * 25 * 2
    finally:
        for conn in conns:
            await conn.close()


async def test_the_service_role_reads_the_counts_but_cannot_write_them(
    db: asyncpg.Connection,
) -> None:
    await db.execute(INSERT, "r", 4)
    async with db.transaction():
        await db.execute("SET LOCAL ROLE monitoring_writer")
        await db.execute(INSERT, "s", 4)  # through the trigger: allowed
        assert await db.fetchval("SELECT sum(n) FROM monitoring.system_alert_counts") == 8
    for statement in (
        "INSERT INTO monitoring.system_alert_counts VALUES ('active', 'low', 99, 1000)",
        "UPDATE monitoring.system_alert_counts SET n = n + 1",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            async with db.transaction():
                await db.execute("SET LOCAL ROLE monitoring_writer")
                await db.execute(statement)
    await assert_exact(db)


async def test_the_migration_counts_the_incidents_already_stored(db: asyncpg.Connection) -> None:
    # back to the schema of migration 3, with incidents in it
    await db.execute("""
        DROP FUNCTION monitoring.count_alerts() CASCADE;
        DROP TABLE monitoring.system_alert_counts;
        DELETE FROM monitoring.schema_migrations WHERE version = 4;
    """)
    await db.execute(INSERT, "old", 7)
    await db.execute(
        "UPDATE monitoring.system_alerts SET status = 'resolved', resolved_at = now() WHERE id <= 3"
    )
    assert await migrate(db, "monitoring") == [4]
    kept = await assert_exact(db)
    assert sum(kept.values()) == 7
