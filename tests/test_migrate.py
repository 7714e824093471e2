"""Who migrates: the owner with `monitoring-exporter migrate`; a writer-only service waits for
it, and no one runs against a schema newer than the code."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from exporter.storage import migrate as migrate_module
from exporter.storage.migrate import load_migrations, migrate
from tests.conftest import MakeClient, as_login, eventually
from tests.support.postgres import drop_database
from tests.support.process import ServiceProcess

LATEST = max(m.version for m in load_migrations())


async def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m exporter ARGS`` to completion."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


async def test_a_writer_only_service_waits_not_ready_until_the_owner_migrates(
    make_client: MakeClient, empty_database_url: str, writer_login: str
) -> None:
    client = await make_client(
        {"auth": {"disabled": True}},
        dsn=as_login(empty_database_url, writer_login),
        wait_ready=False,
    )

    async def says_why() -> bool:
        resp = await client.get("/readyz")
        body = await resp.json()
        return resp.status == 503 and "error" in body.get("checks", {}).get("migrations", {})

    await eventually(says_why)
    body = await (await client.get("/readyz", params={"verbose": ""})).json()
    assert body["failed"] == ["migrations"]  # the database itself answers
    error = body["checks"]["migrations"]["error"]
    assert "`monitoring-exporter migrate`" in error and writer_login in error
    # writes are refused meanwhile, as storage unavailable
    resp = await client.post(
        "/api/v1/health-metrics", json={"service": "a", "metric_type": "cpu", "value": 1}
    )
    assert resp.status == 503
    assert (await resp.json())["error"]["code"] == "storage_unavailable"

    migrated = await run_cli("migrate", "--database-url", empty_database_url)
    assert migrated.returncode == 0, migrated.stderr

    async def ready() -> bool:
        return (await client.get("/readyz")).status == 200

    await eventually(ready, timeout=20)  # it retries at most every 10 s
    conn = await asyncpg.connect(empty_database_url)
    try:
        pushed = "SELECT count(*) FROM monitoring.system_health_metrics WHERE source = 'push'"
        assert await conn.fetchval(pushed) == 0
    finally:
        await conn.close()


async def test_serve_as_the_owner_migrates_at_start_and_stores_the_retention_policy(
    make_client: MakeClient, empty_database_url: str
) -> None:
    await make_client({"retention": {"resolved_alerts": "10d"}}, dsn=empty_database_url)
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT max(version) FROM monitoring.schema_migrations") == (
            LATEST
        )
        assert await conn.fetchval(
            "SELECT keep FROM monitoring.retention_policy WHERE name = 'resolved_alerts'"
        ) == timedelta(days=10)
    finally:
        await conn.close()


async def test_the_message_names_the_schema_owner(
    make_client: MakeClient, database_url: str, db: asyncpg.Connection, writer_login: str
) -> None:
    # a migration the writer finds missing, in a schema owned by someone else
    await db.execute("DELETE FROM monitoring.schema_migrations WHERE version = $1", LATEST)
    owner = await db.fetchval("SELECT current_user")
    client = await make_client(dsn=as_login(database_url, writer_login), wait_ready=False)

    async def says_who() -> bool:
        check = (await (await client.get("/readyz")).json()).get("checks", {}).get("migrations")
        return bool(check and "error" in check)

    await eventually(says_who)
    check = (await (await client.get("/readyz")).json())["checks"]["migrations"]
    assert f"lacks migrations {LATEST}" in check["error"]
    assert f'login of its owner "{owner}"' in check["error"]


async def test_a_replica_refuses_a_schema_newer_than_its_code(
    tmp_path: Path, database_url: str, writer_url: str, db: asyncpg.Connection
) -> None:
    await db.execute(
        "INSERT INTO monitoring.schema_migrations (version, name) VALUES ($1, 'from_the_future')",
        LATEST + 1,
    )
    for name, url in (("writer", writer_url), ("owner", database_url)):
        service = ServiceProcess(["--database-url", url], tmp_path / f"{name}.log")
        try:
            code = await asyncio.to_thread(service.proc.wait, 30)
            assert code == 1, service.log()
            assert "newer than this monitoring-exporter knows" in service.log()
            assert f"applied {LATEST + 1}" in service.log()
        finally:
            service.close()
    migrated = await run_cli("migrate", "--database-url", database_url)
    assert migrated.returncode == 1
    assert "newer than this monitoring-exporter knows" in migrated.stderr
    assert await db.fetchval("SELECT max(version) FROM monitoring.schema_migrations") == LATEST + 1


async def test_migrate_as_the_writer_says_whose_job_it_is(
    writer_url: str, db: asyncpg.Connection
) -> None:
    result = await run_cli("migrate", "--database-url", writer_url)
    assert result.returncode == 1
    owner = await db.fetchval("SELECT current_user")
    assert f'run `monitoring-exporter migrate` with the login of its owner \\"{owner}\\"' in (
        result.stderr
    )


async def test_migrate_stores_the_configured_retention_as_the_policy(
    database_url: str,
    db: asyncpg.Connection,
    write_config: Callable[[dict[str, Any]], Path],
) -> None:
    config = write_config(
        {"retention": {"health_metrics": "7d", "performance_logs": "36h",
                       "performance_log_rollups": "90d"}}
    )  # fmt: skip
    result = await run_cli("migrate", "--config", str(config), "--database-url", database_url)
    assert result.returncode == 0, result.stderr
    policy = dict(await db.fetch("SELECT name, keep FROM monitoring.retention_policy"))
    assert policy == {
        "health_metrics": timedelta(days=7),
        "quality_indicators": timedelta(days=90),
        "resolved_alerts": timedelta(days=180),
        "performance_logs": timedelta(hours=36),
        "performance_log_rollups": timedelta(days=90),
        "performance_log_minute_rollups": timedelta(days=35),
    }


@pytest.fixture
async def owner_login(admin_url: str, empty_database_url: str) -> AsyncIterator[str]:
    """A non-superuser login that may create the schema, as the shipped deployments make it
    (row level security is forced on it, unlike on the superuser the other tests migrate as)."""
    name = f"mexp_owner_{empty_database_url.rsplit('_', 1)[1]}"
    database = empty_database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE ROLE "{name}" LOGIN CREATEROLE')
        await admin.execute(f'GRANT CREATE, CONNECT ON DATABASE "{database}" TO "{name}"')
        yield name
        await drop_database(admin_url, empty_database_url)  # what the role owns goes with it
        await admin.execute(f'DROP ROLE "{name}"')
    finally:
        await admin.close()


async def test_a_non_superuser_owner_migrates_and_runs_retention_under_forced_rls(
    make_client: MakeClient,
    empty_database_url: str,
    owner_login: str,
    writer_login: str,
    write_config: Callable[[dict[str, Any]], Path],
) -> None:
    owner_url = as_login(empty_database_url, owner_login)
    config = write_config({"retention": {"health_metrics": "1d"}})
    result = await run_cli("migrate", "--config", str(config), "--database-url", owner_url)
    assert result.returncode == 0, result.stderr

    owner = await asyncpg.connect(owner_url)
    try:
        assert (
            await owner.fetchval(
                "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'monitoring'"
            )
            == owner_login
        )
        # the service, as the writer, on the owner's schema
        client = await make_client(
            {"auth": {"disabled": True}}, dsn=as_login(empty_database_url, writer_login)
        )
        for age in ("0", "3 days"):
            resp = await client.post(
                "/api/v1/health-metrics",
                json={
                    "service": f"aged {age}",
                    "metric_type": "cpu",
                    "value": 1,
                    "recorded_at": (
                        await owner.fetchval(f"SELECT now() - interval '{age}'")
                    ).isoformat(),
                },
            )
            assert resp.status == 201, await resp.text()
        # retention as the owner (what the definer functions run as) sees and deletes rows
        # through its own policy, and only what the stored policy (1 day) allows
        deleted = await owner.fetch(
            "SELECT * FROM monitoring.apply_retention('infinity', 'infinity', 'infinity')"
        )
        assert {r["table_name"]: r["deleted"] for r in deleted}["system_health_metrics"] == 1
        assert await owner.fetchval(
            "SELECT array_agg(service_name) FROM monitoring.system_health_metrics"
            " WHERE source = 'push'"
        ) == ["aged 0"]
        # a partition the owner's function creates later has RLS and the owner's policy
        created = await owner.fetchval(
            "SELECT monitoring.ensure_performance_log_partitions(current_date + 12,"
            " current_date + 12)"
        )
        assert created == 1
        newest = await owner.fetchrow(
            "SELECT c.relrowsecurity, c.relforcerowsecurity,"
            "       (SELECT array_agg(pg_get_userbyid(r)) FROM pg_policy p, unnest(p.polroles) r"
            "        WHERE p.polrelid = c.oid AND p.polname = 'owner_all') AS owner_policy"
            " FROM pg_class c"
            " WHERE c.relname = 'system_performance_logs_p' || to_char(current_date + 12, 'YYYYMMDD')"
        )
        assert tuple(newest) == (True, True, [owner_login])
    finally:
        await owner.close()


async def test_a_schema_handed_from_the_service_login_to_a_dedicated_owner(
    monkeypatch: pytest.MonkeyPatch,
    admin_url: str,
    empty_database_url: str,
    owner_login: str,
) -> None:
    """The README's upgrade of a deployment whose service login owned the schema (before
    migration 5): REASSIGN OWNED to the new owner, then `migrate` as that owner."""
    old = f"{owner_login}_old"
    database = empty_database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(empty_database_url)
    try:
        await admin.execute(f'CREATE ROLE "{old}" LOGIN CREATEROLE')
        await admin.execute(f'GRANT CREATE, CONNECT ON DATABASE "{database}" TO "{old}"')
        every = migrate_module.load_migrations()
        monkeypatch.setattr(
            migrate_module, "load_migrations", lambda: [m for m in every if m.version < 5]
        )
        conn = await asyncpg.connect(as_login(empty_database_url, old))
        try:
            assert await migrate(conn, "monitoring") == [1, 3, 4]
        finally:
            await conn.close()
        monkeypatch.undo()

        await admin.execute(f'REASSIGN OWNED BY "{old}" TO "{owner_login}"')
        await admin.execute(f'REVOKE CREATE ON DATABASE "{database}" FROM "{old}"')
        await admin.execute(f'ALTER ROLE "{old}" NOCREATEROLE')
        await admin.execute(f'GRANT monitoring_writer TO "{old}"')
        owner_url = as_login(empty_database_url, owner_login)
        result = await run_cli("migrate", "--database-url", owner_url)
        assert result.returncode == 0, result.stderr

        owner = await asyncpg.connect(owner_url)
        try:
            await owner.execute(
                "INSERT INTO monitoring.system_health_metrics (service_name, metric_type, value,"
                " status, recorded_at) VALUES ('x', 'cpu', 1, 'healthy', now() - interval '40 days')"
            )
            deleted = await owner.fetch(
                "SELECT * FROM monitoring.apply_retention('infinity', NULL, NULL)"
            )
            assert {r["table_name"]: r["deleted"] for r in deleted}["system_health_metrics"] == 1
        finally:
            await owner.close()
        result = await run_cli("migrate", "--database-url", as_login(empty_database_url, old))
        assert result.returncode == 1  # the old login is a writer now
    finally:
        await admin.close()
        await drop_database(admin_url, empty_database_url)  # what the roles own goes with it
        cluster = await asyncpg.connect(admin_url)
        try:
            await cluster.execute(f'DROP ROLE IF EXISTS "{old}"')
        finally:
            await cluster.close()
