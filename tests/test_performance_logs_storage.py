"""The writer's storage choices, checked against PostgreSQL itself."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import pytest


async def test_copy_is_refused_under_row_level_security(
    database_url: str, db: asyncpg.Connection
) -> None:
    """Why the writer uses INSERT … SELECT FROM unnest rather than COPY."""
    role = f"pl_{uuid.uuid4().hex[:8]}"
    await db.execute(f"CREATE ROLE {role} LOGIN IN ROLE monitoring_writer")
    try:
        conn = await asyncpg.connect(database_url, user=role)
        try:
            row = ("api_call", 1.0, "success", datetime.now(UTC))
            with pytest.raises(asyncpg.FeatureNotSupportedError, match="row-level security"):
                await conn.copy_records_to_table(
                    "system_performance_logs",
                    schema_name="monitoring",
                    records=[row],
                    columns=["operation_type", "duration_ms", "status", "recorded_at"],
                )
            await conn.execute(
                "INSERT INTO monitoring.system_performance_logs"
                " (operation_type, duration_ms, status, recorded_at)"
                " SELECT * FROM unnest($1::text[], $2::float8[], $3::text[], $4::timestamptz[])",
                [row[0]],
                [row[1]],
                [row[2]],
                [row[3]],
            )
        finally:
            await conn.close()
    finally:
        await db.execute(f"DROP OWNED BY {role}")
        await db.execute(f"DROP ROLE {role}")
    assert await db.fetchval("SELECT count(*) FROM monitoring.system_performance_logs") == 1
