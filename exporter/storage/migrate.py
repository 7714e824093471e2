"""Forward-only numbered migrations, applied under an advisory lock."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

# Versions need not be contiguous: there is no 0002. Migration 2 was folded into 0001 before
# the first release (no database ever recorded version 2), and numbers are never reused, so
# the files go 0001, 0003, 0004, ... and applied_versions() compares sets, not a maximum.
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every replica.
_LOCK_KEY = 0x6D6F6E69746F72


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    sql: str


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


async def pending(conn: asyncpg.Connection, schema: str) -> list[Migration]:
    """Migrations not yet applied to this database."""
    done = await applied_versions(conn, schema)
    return [m for m in load_migrations() if m.version not in done]


async def migrate(conn: asyncpg.Connection, schema: str) -> list[int]:
    """Apply pending migrations, each in its own transaction; return the versions applied.

    Replicas starting together serialise on a session advisory lock, and the list of
    pending migrations is read only once the lock is held.
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
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)


async def migrate_url(dsn: str, schema: str, *, connect_timeout: float = 10.0) -> int:
    """Connect, apply pending migrations, log them and return the exit code."""
    conn = await asyncpg.connect(dsn, timeout=connect_timeout)
    try:
        applied = await migrate(conn, schema)
    finally:
        await conn.close()
    if applied:
        log.info("migrations applied", extra={"versions": applied})
    else:
        log.info("schema is up to date", extra={"schema": schema})
    return 0
