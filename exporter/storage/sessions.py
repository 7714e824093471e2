"""The ``console_sessions`` table: sessions of the operator console, by the hash of their id."""

from __future__ import annotations

from typing import Any

from exporter.storage.database import Database

INSERT = """
INSERT INTO __SCHEMA__.console_sessions (id_hash, token_name, scopes, csrf_secret, expires_at)
VALUES ($1, $2, $3::text[], $4, now() + $5 * interval '1 second')
RETURNING token_name, scopes, csrf_secret, created_at, expires_at
"""
# sessions long past their end go when someone signs in (the writer has no scheduled job for
# so small a table, and a lookup ignores them anyway)
PRUNE = "DELETE FROM __SCHEMA__.console_sessions WHERE expires_at < now() - interval '1 day'"
SELECT = """
SELECT token_name, scopes, csrf_secret, created_at, expires_at
FROM __SCHEMA__.console_sessions WHERE id_hash = $1 AND expires_at > now()
"""
DELETE = "DELETE FROM __SCHEMA__.console_sessions WHERE id_hash = $1"


async def create(
    db: Database, id_hash: bytes, name: str, scopes: list[str], csrf: str, seconds: float
) -> Any:
    """Store a new session; expired ones are pruned on the way."""
    async with db.transaction() as conn:
        await conn.execute(db.sql(PRUNE))
        return await conn.fetchrow(db.sql(INSERT), id_hash, name, scopes, csrf, seconds)


async def find(db: Database, id_hash: bytes) -> Any:
    """The session with this id hash if it has not expired, else None."""
    async with db.connection() as conn:
        return await conn.fetchrow(db.sql(SELECT), id_hash)


async def delete(db: Database, id_hash: bytes) -> bool:
    """End a session; whether there was one."""
    async with db.connection() as conn:
        done: str = await conn.execute(db.sql(DELETE), id_hash)
    return done != "DELETE 0"
