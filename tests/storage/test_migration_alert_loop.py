"""Migration 8 on a database that ran without it (as main did before it landed): open
Alertmanager incidents move to the millisecond, old silences get their 24 h end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from exporter.storage import migrate as migrations


async def test_migration_8_upgrades_what_it_finds(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        every = migrations.load_migrations
        monkeypatch.setattr(
            migrations, "load_migrations", lambda: [m for m in every() if m.version != 8]
        )
        assert 8 not in await migrations.migrate(conn, "monitoring")
        acked_at = datetime(2026, 1, 1, tzinfo=UTC)
        insert = (
            "INSERT INTO monitoring.system_alerts (fingerprint, starts_at, alert_type, severity,"
            " title, source, status, acknowledged_at, silence_id, resolved_at)"
            " VALUES ($1, $2, 'security', 'low', 't', 'alertmanager', $3, $4, $5, $6)"
        )
        at = datetime(2026, 1, 1, 0, 0, 0, 123456, tzinfo=UTC)
        await conn.execute(insert, "open", at, "acknowledged", acked_at, "s1", None)
        await conn.execute(insert, "done", at, "resolved", None, None, acked_at)
        monkeypatch.setattr(migrations, "load_migrations", every)
        assert await migrations.migrate(conn, "monitoring") == [8]
        rows = {
            r["fingerprint"]: r for r in await conn.fetch("SELECT * FROM monitoring.system_alerts")
        }
        assert rows["open"]["starts_at"] == at.replace(microsecond=123000)
        assert rows["open"]["silence_ends_at"] == acked_at + timedelta(hours=24)
        # a resolved incident is history: left as it was
        assert rows["done"]["starts_at"] == at
    finally:
        await conn.close()
