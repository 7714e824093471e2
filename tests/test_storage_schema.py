"""The schema of migration 1: tables, constraints, roles, row level security, notifications."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest

from exporter.storage.migrate import applied_versions, load_migrations, migrate

TABLES = [
    "system_health_metrics",
    "data_quality_indicators",
    "system_alerts",
    "system_alert_events",
    "monitoring_dashboard_config",
    "system_performance_logs",
    "system_alert_counts",
    "schema_migrations",
    "retention_policy",
]

INSERT_CONFIG = (
    "INSERT INTO monitoring.monitoring_dashboard_config (kind, name, config)"
    " VALUES ('dashboard', 'x', '{}')"
)


async def test_every_table_exists_with_rls_enabled_and_forced(db: asyncpg.Connection) -> None:
    rows = await db.fetch(
        "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'monitoring' AND c.relkind IN ('r', 'p') AND c.relispartition = false"
    )
    flags = {r["relname"]: (r["relrowsecurity"], r["relforcerowsecurity"]) for r in rows}
    for table in TABLES:
        assert flags[table] == (True, True), table


async def test_reader_can_select_but_not_write(db: asyncpg.Connection) -> None:
    await db.execute(INSERT_CONFIG)
    async with db.transaction():
        await db.execute("SET LOCAL ROLE monitoring_reader")
        for table in TABLES:
            await db.fetch(f"SELECT * FROM monitoring.{table} LIMIT 1")
        assert await db.fetchval("SELECT count(*) FROM monitoring.monitoring_dashboard_config") == 1
    for statement in (
        INSERT_CONFIG,
        "UPDATE monitoring.monitoring_dashboard_config SET name = 'y'",
        "DELETE FROM monitoring.monitoring_dashboard_config",
        "TRUNCATE monitoring.system_alerts",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as info:
            async with db.transaction():
                await db.execute("SET LOCAL ROLE monitoring_reader")
                await db.execute(statement)
        assert info.value.sqlstate == "42501"


async def test_writer_can_insert_and_update_but_not_delete_or_truncate(
    db: asyncpg.Connection,
) -> None:
    async with db.transaction():
        await db.execute("SET LOCAL ROLE monitoring_writer")
        await db.execute(INSERT_CONFIG)
        await db.execute("UPDATE monitoring.monitoring_dashboard_config SET version = 2")
    for statement in (
        "DELETE FROM monitoring.monitoring_dashboard_config",
        "TRUNCATE monitoring.monitoring_dashboard_config",
        "TRUNCATE monitoring.system_performance_logs",
        "DROP TABLE monitoring.system_alerts",
    ):
        with pytest.raises(asyncpg.PostgresError) as info:
            async with db.transaction():
                await db.execute("SET LOCAL ROLE monitoring_writer")
                await db.execute(statement)
        assert info.value.sqlstate in ("42501",), statement
    assert await db.fetchval("SELECT version FROM monitoring.monitoring_dashboard_config") == 2


async def test_writer_keeps_partitions_and_retention_through_definer_functions(
    db: asyncpg.Connection,
) -> None:
    async with db.transaction():
        await db.execute("SET LOCAL ROLE monitoring_writer")
        created = await db.fetchval(
            "SELECT monitoring.ensure_performance_log_partitions(current_date + 10, current_date + 11)"
        )
        assert created == 2
        # beyond two weeks ahead is out of the writer's reach (test_least_privilege.py)
        assert not await db.fetchval(
            "SELECT monitoring.ensure_performance_log_partitions(current_date + 30, current_date + 31)"
        )
        await db.execute(
            "INSERT INTO monitoring.system_health_metrics"
            " (service_name, metric_type, value, status, recorded_at)"
            " VALUES ('api', 'cpu', 0.5, 'healthy', now() - interval '40 days')"
        )
        deleted = await db.fetch(
            "SELECT * FROM monitoring.apply_retention(now() - interval '30 days', now(), now())"
        )
        assert {r["table_name"]: r["deleted"] for r in deleted}["system_health_metrics"] == 1
        await db.execute(
            "SELECT monitoring.ensure_performance_log_partitions(current_date - 15, current_date)"
        )
        dropped = await db.fetchval(
            "SELECT monitoring.drop_performance_log_partitions(current_date - 13)"
        )
    # only current_date - 15 is wholly older than the 14 days the policy keeps
    assert dropped == 1


async def test_inserts_are_logged_for_the_stream_and_alert_rows_notify_ids(
    db: asyncpg.Connection, database_url: str
) -> None:
    listener = await asyncpg.connect(database_url)
    got: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for channel in ("change_log", "system_alerts"):
        await listener.add_listener(
            channel, lambda _c, _p, ch, payload: got.put_nowait((ch, payload))
        )
    try:
        await db.execute(
            "INSERT INTO monitoring.system_health_metrics (service_name, metric_type, value, status)"
            " VALUES ('api', 'cpu', 0.5, 'healthy'), ('api', 'mem', 0.2, 'healthy')"
        )
        # one wake-up per statement; the rows are in the log, in order, as the client sees them
        assert await asyncio.wait_for(got.get(), 5) == ("change_log", "")
        logged = await db.fetch(
            "SELECT channel, op, data FROM monitoring.change_log"
            " WHERE channel = 'health_metrics' ORDER BY xid, id"
        )
        assert [(r["channel"], r["op"]) for r in logged] == [("health_metrics", "insert")] * 2
        assert [json.loads(r["data"])["metric_type"] for r in logged] == ["cpu", "mem"]
        assert json.loads(logged[0]["data"])["created_at"].endswith("+00:00")
        await db.execute(
            "INSERT INTO monitoring.system_alerts (fingerprint, alert_type, severity, title, source, starts_at)"
            " VALUES ('f1', 'performance', 'high', 'slow', 'api', now())"
        )
        await db.execute(
            "UPDATE monitoring.system_alerts SET status = 'acknowledged', acknowledged_at = now()"
        )
        ops = [await asyncio.wait_for(got.get(), 5) for _ in range(2)]
        assert [c for c, _ in ops] == ["system_alerts", "system_alerts"]
        assert '"op" : "update"' in ops[1][1]
    finally:
        await listener.close()


async def test_large_statements_notify_a_range_within_the_payload_limit(
    db: asyncpg.Connection,
) -> None:
    await db.execute(
        "INSERT INTO monitoring.system_health_metrics (service_name, metric_type, value, status)"
        " SELECT 'svc' || i, 'cpu', 0.1, 'healthy' FROM generate_series(1, 20000) i"
    )
    assert await db.fetchval("SELECT count(*) FROM monitoring.system_health_metrics") == 20000


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO monitoring.data_quality_indicators (source, dataset, dimension, score, status)"
        " VALUES ('shop', 'orders', 'completeness', 101, 'healthy')",
        "INSERT INTO monitoring.data_quality_indicators (source, dataset, dimension, score, status, issues)"
        " VALUES ('shop', 'orders', 'completeness', 90, 'healthy', '{}')",
        "INSERT INTO monitoring.data_quality_indicators (source, dataset, dimension, score, status, total_records, valid_records)"
        " VALUES ('shop', 'orders', 'completeness', 90, 'healthy', 5, 6)",
        "INSERT INTO monitoring.system_health_metrics (service_name, metric_type, value, status)"
        " VALUES ('api', 'cpu', 'NaN', 'healthy')",
        "INSERT INTO monitoring.system_alerts (fingerprint, alert_type, severity, title, source, starts_at)"
        " VALUES ('f', 'performance', 'urgent', 't', 'api', now())",
        "INSERT INTO monitoring.system_performance_logs (operation_type, duration_ms, status)"
        " VALUES ('api_call', -1, 'success')",
        # PostgreSQL orders NaN above every number, so ">= 0" alone would let it through
        "INSERT INTO monitoring.system_performance_logs (operation_type, duration_ms, status)"
        " VALUES ('api_call', 'NaN', 'success')",
        "INSERT INTO monitoring.system_performance_logs (operation_type, duration_ms, status, cpu_usage_percent)"
        " VALUES ('api_call', 1, 'success', 'NaN')",
    ],
)
async def test_check_constraints_guard_the_data(db: asyncpg.Connection, statement: str) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(statement)


async def test_alert_incidents_are_unique_per_fingerprint_and_start(db: asyncpg.Connection) -> None:
    insert = (
        "INSERT INTO monitoring.system_alerts (fingerprint, alert_type, severity, title, source, starts_at)"
        " VALUES ('f', 'performance', 'high', 't', 'api', '2026-01-01T00:00:00Z')"
    )
    await db.execute(insert)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute(insert)


async def test_updated_at_is_maintained_by_a_trigger(db: asyncpg.Connection) -> None:
    await db.execute(INSERT_CONFIG)
    before = await db.fetchval("SELECT updated_at FROM monitoring.monitoring_dashboard_config")
    await db.execute("UPDATE monitoring.monitoring_dashboard_config SET version = 2")
    after = await db.fetchval("SELECT updated_at FROM monitoring.monitoring_dashboard_config")
    assert after > before


async def test_performance_logs_have_daily_partitions_ahead(db: asyncpg.Connection) -> None:
    parts = await db.fetchval(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'monitoring.system_performance_logs'::regclass"
    )
    assert parts >= 8
    await db.execute(
        "INSERT INTO monitoring.system_performance_logs (operation_type, duration_ms, status, recorded_at)"
        " VALUES ('api_call', 1.5, 'success', now() + interval '6 days')"
    )


async def test_migrating_twice_changes_nothing(database_url: str, db: asyncpg.Connection) -> None:
    def snapshot_sql() -> str:
        return (
            "SELECT string_agg(c.relname || ':' || c.relkind::text, ',' ORDER BY c.relname)"
            " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'monitoring'"
        )

    before = await db.fetchval(snapshot_sql())
    versions = await db.fetch("SELECT version, applied_at FROM monitoring.schema_migrations")
    assert await migrate(db, "monitoring") == []
    assert await db.fetchval(snapshot_sql()) == before
    assert (
        await db.fetch("SELECT version, applied_at FROM monitoring.schema_migrations") == versions
    )


async def test_concurrent_replicas_serialise_on_the_lock(empty_database_url: str) -> None:
    conns = [await asyncpg.connect(empty_database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c, "monitoring") for c in conns))
        expected = [m.version for m in load_migrations()]
        assert sorted(v for r in results for v in r) == expected
        assert await applied_versions(conns[0], "monitoring") == set(expected)
    finally:
        for c in conns:
            await c.close()


async def test_a_custom_schema_name_is_honoured(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn, "observability")
        assert await conn.fetchval("SELECT to_regclass('observability.system_alerts')") is not None
        assert await conn.fetchval("SELECT to_regclass('monitoring.system_alerts')") is None
    finally:
        await conn.close()
