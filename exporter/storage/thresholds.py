"""Threshold overrides in monitoring_dashboard_config (kind 'threshold', name 'service/type')."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from exporter.storage.database import Database

KIND = "threshold"

UPSERT_THRESHOLD = """
INSERT INTO {schema}.monitoring_dashboard_config (kind, name, owner, config)
VALUES ('threshold', $1, '', $2::jsonb)
ON CONFLICT (kind, name, owner) DO UPDATE
    SET config = EXCLUDED.config,
        version = {schema}.monitoring_dashboard_config.version + 1
RETURNING name, config, version, updated_at
"""

UPSERT_IF_VERSION = """
UPDATE {schema}.monitoring_dashboard_config
   SET config = $2::jsonb, version = version + 1
 WHERE kind = 'threshold' AND name = $1 AND owner = '' AND version = $3
RETURNING name, config, version, updated_at
"""

SELECT_THRESHOLDS = """
SELECT name, config, version, updated_at
FROM {schema}.monitoring_dashboard_config
WHERE kind = 'threshold' AND owner = ''
ORDER BY name
"""


# Removing a rule leaves a tombstone, a new version of the row: replicas that re-read the rules
# drop their copy, and the writer role needs no DELETE.
REMOVE_THRESHOLD = """
UPDATE {schema}.monitoring_dashboard_config
   SET config = jsonb_build_object('removed', true), version = version + 1
 WHERE kind = 'threshold' AND name = $1 AND owner = '' AND NOT config ? 'removed'
   AND ($2::integer IS NULL OR version = $2)
RETURNING name, config, version, updated_at
"""

SELECT_THRESHOLD = """
SELECT version, config ? 'removed' AS removed
FROM {schema}.monitoring_dashboard_config
WHERE kind = 'threshold' AND name = $1 AND owner = ''
"""


class VersionConflict(Exception):
    """The stored rule is not at the version the caller expected."""


class NoOverride(Exception):
    """No rule is stored through the API for this key (or it was removed)."""


def is_removed(config: dict[str, Any]) -> bool:
    """Whether a stored rule's config is a removal's tombstone."""
    return config.get("removed") is True


def rule_name(service: str, metric_type: str) -> str:
    """The config row name of a rule: ``<service>/<metric_type>``."""
    return f"{service}/{metric_type}"


def split_name(name: str) -> tuple[str, str]:
    """(service, metric_type) of a rule name; metric types never contain '/'."""
    service, _, metric_type = name.rpartition("/")
    return service, metric_type


async def save_threshold(
    db: Database, service: str, metric_type: str, config: dict[str, Any], expect: int | None
) -> Any:
    """Store a rule (a new version of it); with ``expect``, only over that version."""
    body = msgspec.json.encode(config).decode()
    name = rule_name(service, metric_type)
    async with db.transaction() as conn:
        if expect is None:
            row = await conn.fetchrow(UPSERT_THRESHOLD.format(schema=db.schema), name, body)
        else:
            row = await conn.fetchrow(
                UPSERT_IF_VERSION.format(schema=db.schema), name, body, expect
            )
            if row is None:
                raise VersionConflict(name)
    return row


async def remove_threshold(db: Database, service: str, metric_type: str, expect: int | None) -> Any:
    """Remove a stored rule (a tombstone, its next version); with ``expect``, only that version.

    Raises NoOverride when there is none, VersionConflict when it is at another version.
    """
    name = rule_name(service, metric_type)
    async with db.transaction() as conn:
        row = await conn.fetchrow(REMOVE_THRESHOLD.format(schema=db.schema), name, expect)
        if row is None:
            current = await conn.fetchrow(SELECT_THRESHOLD.format(schema=db.schema), name)
            if current is None or current["removed"]:
                raise NoOverride(name)
            raise VersionConflict(name)
    return row


async def load_thresholds(conn: asyncpg.Connection, schema: str) -> list[Any]:
    """Every stored rule, tombstones included: name, config (JSON text), version, updated_at."""
    rows: list[Any] = await conn.fetch(SELECT_THRESHOLDS.format(schema=schema))
    return rows
