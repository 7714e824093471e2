"""Saved views of the console in monitoring_dashboard_config (kind 'dashboard', owner = the
token's name), versioned like threshold rules: a removal is a tombstone, the row's next
version, so a view made again never reuses a version a client may still hold."""

from __future__ import annotations

from typing import Any

import msgspec

from exporter.storage.database import Database

COLUMNS = "name, owner, config, version, updated_at"
UPSERT = f"""
INSERT INTO __SCHEMA__.monitoring_dashboard_config (kind, name, owner, config)
VALUES ('dashboard', $1, $2, $3::jsonb)
ON CONFLICT (kind, name, owner) DO UPDATE
    SET config = EXCLUDED.config,
        version = __SCHEMA__.monitoring_dashboard_config.version + 1
RETURNING {COLUMNS}
"""
# over a live view at that version, or over a tombstone at that version (made again)
UPDATE_IF_VERSION = f"""
UPDATE __SCHEMA__.monitoring_dashboard_config
   SET config = $3::jsonb, version = version + 1
 WHERE kind = 'dashboard' AND name = $1 AND owner = $2 AND version = $4
RETURNING {COLUMNS}
"""
REMOVE = f"""
UPDATE __SCHEMA__.monitoring_dashboard_config
   SET config = jsonb_build_object('removed', true), version = version + 1
 WHERE kind = 'dashboard' AND name = $1 AND owner = $2 AND NOT config ? 'removed'
   AND ($3::integer IS NULL OR version = $3)
RETURNING {COLUMNS}
"""
SELECT_ONE = f"""
SELECT {COLUMNS} FROM __SCHEMA__.monitoring_dashboard_config
WHERE kind = 'dashboard' AND name = $1 AND owner = $2
"""
# what a person may open: their own views, views shared by others, and (admins) all
SELECT_VISIBLE = f"""
SELECT {COLUMNS} FROM __SCHEMA__.monitoring_dashboard_config
WHERE kind = 'dashboard' AND NOT config ? 'removed'
  AND (owner = $1 OR (config->>'shared')::boolean IS TRUE OR $2)
ORDER BY owner <> $1, owner, name
LIMIT 1000
"""


class VersionConflict(Exception):
    """The stored view is not at the version the caller expected."""


class NoView(Exception):
    """No such view (or it was removed)."""


def is_removed(row: Any) -> bool:
    """Whether a row is a removal's tombstone."""
    config = msgspec.json.decode(row["config"])
    return isinstance(config, dict) and config.get("removed") is True


async def get(db: Database, name: str, owner: str) -> Any:
    """The view ``name`` of ``owner``, or None (tombstones included: check is_removed)."""
    async with db.connection() as conn:
        return await conn.fetchrow(db.sql(SELECT_ONE), name, owner)


async def visible(db: Database, person: str, admin: bool) -> list[Any]:
    """The views ``person`` may open, their own first."""
    async with db.connection() as conn:
        rows: list[Any] = await conn.fetch(db.sql(SELECT_VISIBLE), person, admin)
    return rows


async def save(db: Database, name: str, owner: str, config: str, expect: int | None) -> Any:
    """Store a view (its next version); with ``expect``, only over that version."""
    async with db.transaction() as conn:
        if expect is None:
            return await conn.fetchrow(db.sql(UPSERT), name, owner, config)
        row = await conn.fetchrow(db.sql(UPDATE_IF_VERSION), name, owner, config, expect)
        if row is None:
            raise VersionConflict(name)
        return row


async def remove(db: Database, name: str, owner: str, expect: int | None) -> Any:
    """Remove a view (a tombstone); NoView when there is none, VersionConflict when it is
    at another version than ``expect``."""
    async with db.transaction() as conn:
        row = await conn.fetchrow(db.sql(REMOVE), name, owner, expect)
        if row is None:
            current = await conn.fetchrow(db.sql(SELECT_ONE), name, owner)
            if current is None or is_removed(current):
                raise NoView(name)
            raise VersionConflict(name)
        return row
