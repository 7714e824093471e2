"""Forward-only numbered migrations, applied by the schema's owner under an advisory lock.

A login that owns the schema (or may create it) migrates; any other login, such as the
service's writer-only login, only reads which versions are applied.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources

import asyncpg

from exporter.config.performance_logs import Retention

log = logging.getLogger(__name__)

# Versions need not be contiguous: there is no 0002. Migration 2 was folded into 0001 before
# the first release (no database ever recorded version 2), and numbers are never reused, so
# the files go 0001, 0003, 0004, ... and applied_versions() compares sets, not a maximum.
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every replica.
_LOCK_KEY = 0x6D6F6E69746F72

# Who may migrate: a login that can act as the schema's owner (the owner itself, a member
# inheriting it, a superuser), or, before the schema exists, one that may create it.
_INSPECT = """
SELECT current_user AS login,
       pg_get_userbyid(n.nspowner) AS owner,
       CASE WHEN n.oid IS NULL THEN has_database_privilege(current_database(), 'CREATE')
            ELSE pg_has_role(n.nspowner, 'USAGE') END AS may_migrate,
       to_regclass(format('%I.schema_migrations', $1::text)) IS NOT NULL AS tracked
FROM (SELECT) AS one LEFT JOIN pg_namespace AS n ON n.nspname = $1
"""

# The retention the SECURITY DEFINER retention functions enforce (migration 5), from config.
_STORE_POLICY = """
INSERT INTO {schema}.retention_policy AS p (name, keep)
SELECT * FROM unnest($1::text[], $2::interval[])
ON CONFLICT (name) DO UPDATE SET keep = EXCLUDED.keep WHERE p.keep IS DISTINCT FROM EXCLUDED.keep
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    sql: str


class SchemaTooNew(Exception):
    """The database holds migrations this code does not know: a newer release migrated it."""


class MigrationsPending(Exception):
    """Migrations are due and this login may not apply them."""


@dataclass(frozen=True, slots=True)
class SchemaState:
    """What a login finds in the database: applied versions, and whether it may migrate."""

    schema: str
    login: str
    owner: str | None
    may_migrate: bool
    applied: frozenset[int]
    known: tuple[int, ...]

    @property
    def pending(self) -> list[int]:
        """Versions this code has and the database lacks."""
        return [v for v in self.known if v not in self.applied]

    @property
    def newer(self) -> list[int]:
        """Applied versions beyond the newest this code knows."""
        latest = max(self.known, default=0)
        return sorted(v for v in self.applied if v > latest)

    def too_new(self) -> SchemaTooNew:
        """The refusal to run against this schema."""
        return SchemaTooNew(
            f'schema "{self.schema}" has migrations newer than this monitoring-exporter knows'
            f" (applied {_versions(self.newer)}, newest known {max(self.known, default=0)}):"
            " it was migrated by a newer release; run that release, or restore a backup"
        )

    def blocked(self) -> MigrationsPending:
        """Why this login cannot bring the schema up to date itself."""
        return MigrationsPending(
            f'schema "{self.schema}" lacks migrations {_versions(self.pending)} and login'
            f' "{self.login}" may not apply them: {self.run_migrate()}'
        )

    def run_migrate(self) -> str:
        """What to do about it."""
        if self.owner is None:
            who = "a login that may create the schema (CREATE on the database)"
        else:
            who = f'the login of its owner "{self.owner}"'
        return f"run `monitoring-exporter migrate` with {who}"


def _versions(versions: list[int]) -> str:
    return ", ".join(str(v) for v in versions)


def load_migrations() -> list[Migration]:
    """Read the migration files shipped in the package, in order."""
    found = []
    for entry in resources.files("exporter.storage.migrations").iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    return found


def render(sql: str, schema: str) -> str:
    """Put the (validated) schema name into a migration's SQL."""
    return sql.replace("__SCHEMA_NAME__", schema).replace("__SCHEMA__", f'"{schema}"')


async def applied_versions(conn: asyncpg.Connection, schema: str) -> set[int]:
    """The versions already applied, or an empty set before the first migration."""
    exists = await conn.fetchval("SELECT to_regclass($1)", f'"{schema}".schema_migrations')
    if exists is None:
        return set()
    rows = await conn.fetch(f'SELECT version FROM "{schema}".schema_migrations')
    return {r["version"] for r in rows}


async def inspect(conn: asyncpg.Connection, schema: str) -> SchemaState:
    """The schema as this connection's login sees it."""
    row = await conn.fetchrow(_INSPECT, schema)
    applied = await applied_versions(conn, schema) if row["tracked"] else set()
    return SchemaState(
        schema=schema,
        login=row["login"],
        owner=row["owner"],
        may_migrate=row["may_migrate"],
        applied=frozenset(applied),
        known=tuple(m.version for m in load_migrations()),
    )


async def pending(conn: asyncpg.Connection, schema: str) -> list[Migration]:
    """Migrations not yet applied to this database."""
    done = await applied_versions(conn, schema)
    return [m for m in load_migrations() if m.version not in done]


async def migrate(
    conn: asyncpg.Connection, schema: str, retention: Retention | None = None
) -> list[int]:
    """Apply pending migrations, each in its own transaction; return the versions applied.

    Replicas starting together serialise on a session advisory lock, and the list of
    pending migrations is read only once the lock is held. Raises SchemaTooNew when the
    database is ahead of this code. With ``retention``, stores it as the retention policy.
    """
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations ('
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        state = await inspect(conn, schema)
        if state.newer:
            raise state.too_new()
        applied = []
        for migration in await pending(conn, schema):
            async with conn.transaction():
                await conn.execute(render(migration.sql, schema))
                await conn.execute(
                    f'INSERT INTO "{schema}".schema_migrations (version, name) VALUES ($1, $2)',
                    migration.version,
                    migration.name,
                )
            log.info("applied migration", extra={"version": migration.version})
            applied.append(migration.version)
        await conn.execute(
            f'GRANT SELECT ON "{schema}".schema_migrations TO monitoring_reader, monitoring_writer'
        )
        if retention is not None:
            await store_retention_policy(conn, schema, retention)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def store_retention_policy(
    conn: asyncpg.Connection, schema: str, retention: Retention
) -> None:
    """Store the configured retention where the retention functions enforce it."""
    keep = {
        "health_metrics": retention.health_metrics,
        "quality_indicators": retention.quality_indicators,
        "resolved_alerts": retention.resolved_alerts,
        "performance_logs": retention.performance_logs,
        "performance_log_rollups": retention.performance_log_rollups,
        "performance_log_minute_rollups": retention.performance_log_minute_rollups,
    }
    await conn.execute(
        _STORE_POLICY.format(schema=f'"{schema}"'),
        list(keep),
        [timedelta(seconds=d.seconds) for d in keep.values()],
    )


async def migrate_url(
    dsn: str, schema: str, retention: Retention, *, connect_timeout: float = 10.0
) -> int:
    """Connect, apply pending migrations and store the retention policy; the exit code.

    1, with the reason logged, when this login may not migrate the schema or the database
    is newer than this code.
    """
    conn = await asyncpg.connect(dsn, timeout=connect_timeout)
    try:
        state = await inspect(conn, schema)
        if not state.may_migrate:
            reason = f'login "{state.login}" may not migrate schema "{schema}"'
            log.error(f"{reason}: {state.run_migrate()}")
            return 1
        applied = await migrate(conn, schema, retention)
    except SchemaTooNew as exc:
        log.error(str(exc))
        return 1
    finally:
        await conn.close()
    if applied:
        log.info("migrations applied", extra={"versions": applied})
    else:
        log.info("schema is up to date", extra={"schema": schema})
    return 0
