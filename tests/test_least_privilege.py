"""Least privilege: what the service's writer-only login can and cannot do to the schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.conftest import MakeClient, as_login

# Every function of the schema the writer may call; anything else is the owner's.
WRITER_FUNCTIONS = {
    "apply_retention",
    "drop_performance_log_partitions",
    "ensure_performance_log_partitions",
    # idempotency keys older than a day (or past the bound) and long-expired series only
    "prune_replica_state",
    # rollups past their (clamped) retention
    "prune_performance_rollups",
    # the change log past its (clamped) retention, and the overview's verdict (migration 7):
    # the writer reads the log but never writes it
    "prune_change_log",
    "record_verdict",
}
# Read-only helpers of the performance-log rollups (migration 9): the caller's rights (no
# SECURITY DEFINER, no settings), so calling them grants nothing the caller's SELECTs do not.
READ_FUNCTIONS = {
    "performance_sketch_key",
    "performance_sketch_value",
    "performance_sketch_merge",
    "performance_sketch_quantiles",
    "performance_histogram_bucket",
    "performance_floor",
    "performance_ceil",
    "performance_rollups",
    "performance_summary",
    # an alert's change as a client sees it (migration 7)
    "change_data",
}
TABLES_AND_PARTITIONS = """
SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, c.relispartition,
       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'monitoring' AND c.relkind IN ('r', 'p')
"""
PARTITIONS = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'monitoring.system_performance_logs'::regclass
"""


def part(day: datetime) -> str:
    return f"system_performance_logs_p{day:%Y%m%d}"


@pytest.fixture
async def writer(writer_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection as the writer-only login the service uses."""
    conn = await asyncpg.connect(writer_url)
    yield conn
    await conn.close()


@pytest.fixture
async def reader(database_url: str, db: asyncpg.Connection) -> AsyncIterator[str]:
    """The URL of a login granted only monitoring_reader (Grafana's kind of login)."""
    name = f"mexp_reader_{database_url.rsplit('_', 1)[1]}"
    await db.execute(f'CREATE ROLE "{name}" LOGIN; GRANT monitoring_reader TO "{name}"')
    yield as_login(database_url, name)
    await db.execute(f'DROP ROLE "{name}"')


async def test_the_service_logs_in_as_a_writer_only_login(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    await make_client()
    logins = await db.fetch(
        "SELECT DISTINCT usename FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name = 'monitoring-exporter'"
    )
    assert len(logins) == 1
    login = logins[0]["usename"]
    role = await db.fetchrow(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles"
        " WHERE rolname = $1",
        login,
    )
    assert dict(role) == dict.fromkeys(role.keys(), False)
    granted = await db.fetch(
        "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
        " JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1",
        login,
    )
    assert [g["rolname"] for g in granted] == ["monitoring_writer"]
    owner = await db.fetchval(
        "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'monitoring'"
    )
    assert owner != login


async def seed_young_and_old(db: asyncpg.Connection, now: datetime) -> None:
    """Rows well inside the default policy (30/90/180/14 days) and rows well past it."""
    young, old = now - timedelta(days=1), now - timedelta(days=400)
    await db.execute(
        "INSERT INTO monitoring.system_health_metrics (service_name, metric_type, value, status,"
        " recorded_at) VALUES ('young', 'cpu', 1, 'healthy', $1), ('old', 'cpu', 1, 'healthy', $2)",
        young,
        old,
    )
    await db.execute(
        "INSERT INTO monitoring.data_quality_indicators (source, dataset, dimension, score,"
        " status, measured_at) VALUES ('young', 'd', 'accuracy', 99, 'healthy', $1),"
        " ('old', 'd', 'accuracy', 99, 'healthy', $2)",
        young,
        old,
    )
    await db.execute(
        "INSERT INTO monitoring.system_alerts (fingerprint, alert_type, severity, status, title,"
        " source, starts_at, resolved_at, updated_at) VALUES"
        " ('young', 'security', 'low', 'resolved', 't', 'api', $1, $1, $1),"
        " ('old', 'security', 'low', 'resolved', 't', 'api', $2, $2, $2)",
        young,
        old,
    )
    await db.execute(
        "SELECT monitoring.ensure_performance_log_partitions($1, $1)",
        (now - timedelta(days=13)).date(),
    )
    old_day = now - timedelta(days=20)
    await db.execute(
        f"CREATE TABLE monitoring.{part(old_day)} PARTITION OF monitoring.system_performance_logs"
        f" FOR VALUES FROM ('{old_day:%Y-%m-%d}+00') TO"
        f" ('{old_day + timedelta(days=1):%Y-%m-%d}+00')"
    )
    await db.execute(
        "INSERT INTO monitoring.system_performance_logs (operation_type, operation_name,"
        " duration_ms, status, recorded_at) VALUES ('t', 'young', 1, 'success', $1),"
        " ('t', 'recent', 1, 'success', $2), ('t', 'old', 1, 'success', $3)",
        now,
        now - timedelta(days=13),
        old_day,
    )


async def names(db: asyncpg.Connection) -> dict[str, set[str]]:
    """What each retained table holds, by the marker seeded into it."""
    return {
        "health": {
            r[0]
            for r in await db.fetch("SELECT service_name FROM monitoring.system_health_metrics")
        },
        "quality": {
            r[0] for r in await db.fetch("SELECT source FROM monitoring.data_quality_indicators")
        },
        "alerts": {
            r[0] for r in await db.fetch("SELECT fingerprint FROM monitoring.system_alerts")
        },
        "logs": {
            r[0]
            for r in await db.fetch("SELECT operation_name FROM monitoring.system_performance_logs")
        },
    }


@pytest.mark.parametrize(
    ("cutoff", "day"),
    [("infinity", "infinity"), ("9999-12-31", "9999-12-31"), ("now", "today")],
)
async def test_hostile_cutoffs_remove_nothing_younger_than_the_policy(
    db: asyncpg.Connection, writer: asyncpg.Connection, cutoff: str, day: str
) -> None:
    now = datetime.now(UTC)
    await seed_young_and_old(db, now)
    # literals, as a hostile caller would type them (asyncpg binds datetimes only)
    deleted = await writer.fetch(
        "SELECT * FROM monitoring.apply_retention($1::text::timestamptz,"
        " $1::text::timestamptz, $1::text::timestamptz)",
        cutoff,
    )
    dropped = await writer.fetchval(
        "SELECT monitoring.drop_performance_log_partitions($1::text::date)", day
    )
    # what the policy allows goes, whatever the cutoff; nothing younger
    assert {r["table_name"]: r["deleted"] for r in deleted} == {
        "system_health_metrics": 1,
        "data_quality_indicators": 1,
        "system_alerts": 1,
    }
    assert dropped == 1
    assert await names(db) == {
        "health": {"young"},
        "quality": {"young"},
        "alerts": {"young"},
        "logs": {"young", "recent"},
    }
    partitions = {r[0] for r in await db.fetch(PARTITIONS)}
    assert part(now) in partitions and part(now - timedelta(days=13)) in partitions


async def test_null_cutoffs_remove_nothing(
    db: asyncpg.Connection, writer: asyncpg.Connection
) -> None:
    await seed_young_and_old(db, datetime.now(UTC))
    before = await names(db)
    deleted = await writer.fetch("SELECT * FROM monitoring.apply_retention(NULL, NULL, NULL)")
    assert {r["deleted"] for r in deleted} == {0}
    assert await writer.fetchval("SELECT monitoring.drop_performance_log_partitions(NULL)") == 0
    assert (
        await writer.fetchval("SELECT monitoring.ensure_performance_log_partitions(NULL, NULL)")
        == 0
    )
    assert await names(db) == before


async def test_the_policy_follows_the_configured_retention_and_only_the_owner_writes_it(
    db: asyncpg.Connection, writer: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    await seed_young_and_old(db, now)
    # the owner stores a shorter retention (what `migrate` does with retention.*)
    await db.execute(
        "UPDATE monitoring.retention_policy SET keep = interval '12 hours'"
        " WHERE name = 'health_metrics'"
    )
    deleted = await writer.fetch("SELECT * FROM monitoring.apply_retention('infinity', NULL, NULL)")
    assert {r["table_name"]: r["deleted"] for r in deleted}["system_health_metrics"] == 2
    for statement in (
        "UPDATE monitoring.retention_policy SET keep = interval '0'",
        "INSERT INTO monitoring.retention_policy (name, keep) VALUES ('x', '1 day')",
        "DELETE FROM monitoring.retention_policy",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await writer.execute(statement)


async def test_the_writer_cannot_backdate_rows_into_reach_of_retention(
    db: asyncpg.Connection, writer: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    await seed_young_and_old(db, now)
    for table, column in (
        ("system_health_metrics", "recorded_at"),
        ("data_quality_indicators", "measured_at"),
        ("system_performance_logs", "recorded_at"),
        ("system_alert_events", "at"),
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await writer.execute(
                f"UPDATE monitoring.{table} SET {column} = now() - interval '10 years'"
            )
    # an incident the writer may update: a backdated resolved_at alone does not expire it
    await writer.execute(
        "UPDATE monitoring.system_alerts SET resolved_at = now() - interval '10 years'"
    )
    await writer.fetch("SELECT * FROM monitoring.apply_retention(NULL, NULL, 'infinity')")
    assert (await names(db))["alerts"] == {"young", "old"}  # "old" was just touched too


async def test_partitions_only_in_a_bounded_range_around_today(
    db: asyncpg.Connection, writer: asyncpg.Connection
) -> None:
    today = datetime.now(UTC)
    created = await writer.fetchval(
        "SELECT monitoring.ensure_performance_log_partitions('-infinity', 'infinity')"
    )
    days = sorted(
        datetime.strptime(r[0][-8:], "%Y%m%d").replace(tzinfo=UTC).date()
        for r in await db.fetch(PARTITIONS)
    )
    # the day before the 14-day horizon up to two weeks ahead (the migration made some)
    assert days[0] == (today - timedelta(days=15)).date()
    assert days[-1] == (today + timedelta(days=14)).date()
    assert len(days) == 30 and 0 < created <= 30


async def test_the_writer_cannot_write_schema_migrations(
    db: asyncpg.Connection, writer: asyncpg.Connection
) -> None:
    before = await db.fetch("SELECT * FROM monitoring.schema_migrations ORDER BY version")
    assert [
        r["version"]
        for r in await writer.fetch(
            "SELECT version FROM monitoring.schema_migrations ORDER BY version"
        )
    ] == [r["version"] for r in before]
    for statement in (
        "INSERT INTO monitoring.schema_migrations (version, name) VALUES (6, 'fake')",
        "UPDATE monitoring.schema_migrations SET version = 6 WHERE version = 5",
        "DELETE FROM monitoring.schema_migrations",
        "TRUNCATE monitoring.schema_migrations",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError) as info:
            await writer.execute(statement)
        assert info.value.sqlstate == "42501", statement
    assert await db.fetch("SELECT * FROM monitoring.schema_migrations ORDER BY version") == before


async def test_row_level_security_on_every_table_and_partition_present_and_future(
    db: asyncpg.Connection, writer: asyncpg.Connection
) -> None:
    future = datetime.now(UTC) + timedelta(days=12)
    assert part(future) not in {r[0] for r in await db.fetch(PARTITIONS)}
    assert (
        await writer.fetchval(
            "SELECT monitoring.ensure_performance_log_partitions($1, $1)", future.date()
        )
        == 1
    )
    rows = {r["relname"]: r for r in await db.fetch(TABLES_AND_PARTITIONS)}
    assert {"schema_migrations", "retention_policy", part(future)} <= set(rows)
    assert sum(r["relispartition"] for r in rows.values()) >= 9
    for name, row in rows.items():
        assert (row["relrowsecurity"], row["relforcerowsecurity"]) == (True, True), name
        assert row["policies"] >= 3, name  # reader, writer, owner


async def test_the_writer_may_call_only_the_retention_functions_and_each_pins_search_path(
    db: asyncpg.Connection,
) -> None:
    functions = await db.fetch(
        "SELECT p.proname, p.prosecdef, p.proconfig, p.provolatile,"
        " p.prorettype = 'trigger'::regtype AS trigger,"
        " has_function_privilege('monitoring_writer', p.oid, 'EXECUTE') AS writer,"
        " has_function_privilege('monitoring_reader', p.oid, 'EXECUTE') AS reader"
        " FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
        " WHERE n.nspname = 'monitoring'"
    )
    callable_by_writer = {f["proname"] for f in functions if f["writer"] and not f["trigger"]}
    assert callable_by_writer == WRITER_FUNCTIONS | READ_FUNCTIONS
    callable_by_reader = {f["proname"] for f in functions if f["reader"] and not f["trigger"]}
    assert callable_by_reader == READ_FUNCTIONS
    for f in functions:
        if f["proname"] in READ_FUNCTIONS:
            assert not f["prosecdef"] and not f["proconfig"], f
            assert f["provolatile"] in (b"i", b"s"), f  # they read, never write
    for f in functions:
        if f["prosecdef"]:
            assert "search_path=pg_catalog, pg_temp" in (f["proconfig"] or []), f["proname"]


async def test_the_reader_stays_select_only(db: asyncpg.Connection, reader: str) -> None:
    await db.execute(
        "INSERT INTO monitoring.system_health_metrics (service_name, metric_type, value, status)"
        " VALUES ('a', 'cpu', 1, 'healthy')"
    )
    conn = await asyncpg.connect(reader)
    try:
        assert await conn.fetchval("SELECT count(*) FROM monitoring.system_health_metrics") == 1
        assert await conn.fetchval("SELECT count(*) FROM monitoring.retention_policy") == 6
        tables = await db.fetch(
            "SELECT c.relname, a.attname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = 1"
            " WHERE n.nspname = 'monitoring' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        )
        # the six of the contract, counts, the retention policy, migration 6's state, and
        # migration 8's maintenance windows and heartbeats, migration 9's rollups, migration
        # 7's change log and its state, migration 10's console sessions, migration 11's stream
        # tickets
        assert len(tables) == 23
        for table, column in tables:
            for statement in (
                f"INSERT INTO monitoring.{table} DEFAULT VALUES",
                f"UPDATE monitoring.{table} SET {column} = {column}",
                f"DELETE FROM monitoring.{table}",
                f"TRUNCATE monitoring.{table}",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
        for call in (
            "SELECT * FROM monitoring.apply_retention('infinity', 'infinity', 'infinity')",
            "SELECT monitoring.drop_performance_log_partitions('infinity')",
            "SELECT monitoring.ensure_performance_log_partitions(current_date, current_date)",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(call)
    finally:
        await conn.close()
    assert await db.fetchval("SELECT count(*) FROM monitoring.system_health_metrics") == 1


async def test_console_sessions_are_the_writers_alone(
    db: asyncpg.Connection, reader: str, writer: asyncpg.Connection
) -> None:
    await writer.execute(
        "INSERT INTO monitoring.console_sessions (id_hash, token_name, scopes, csrf_secret,"
        " expires_at) VALUES (sha256('x'), 'ann', '{read}', repeat('c', 43), now() + '1h')"
    )
    conn = await asyncpg.connect(reader)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM monitoring.console_sessions")
    finally:
        await conn.close()
    # signing out deletes; nothing else the writer holds can be deleted
    assert await writer.execute("DELETE FROM monitoring.console_sessions") == "DELETE 1"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await writer.execute("DELETE FROM monitoring.monitoring_dashboard_config")
