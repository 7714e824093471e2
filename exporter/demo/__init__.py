"""The demo data set (``--demo``): configuration that points at real things, and seeded rows."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import msgspec
from aiohttp import web

from exporter.config import Config
from exporter.demo import health, quality
from exporter.demo.health import demo_history
from exporter.demo.performance_logs import demo_rows
from exporter.features import performance_logs
from exporter.features.core import DATABASE, LEADERSHIP
from exporter.features.health import HEALTH
from exporter.storage import alerts_demo as alert_store
from exporter.storage import health as health_store
from exporter.storage import performance_log_queries as log_queries
from exporter.storage import quality_demo

log = logging.getLogger(__name__)


def demo_config(config: Config, dsn: str, listen_address: str) -> Config:
    """The configuration with demo mode on, the demo services and the demo quality checks.

    Without tokens, API authentication is disabled; the start-up banner says so (a warning
    here was the only line above info on the happy path of ``make run``).
    """
    auth = config.auth
    if not auth.tokens and not auth.disabled:
        auth = msgspec.structs.replace(auth, disabled=True)
    # the demo records the service's own API calls, so the performance dashboard has live data
    logs = msgspec.structs.replace(config.performance_logs, self_instrument=True)
    config = msgspec.structs.replace(config, demo=True, auth=auth, performance_logs=logs)
    config = health.with_demo_services(config, dsn, listen_address)
    return quality.with_demo_checks(config, dsn)


def setup(app: web.Application) -> None:
    """Seed the demo data set once per database (the leader does it, before its jobs run)."""
    leadership = app[LEADERSHIP]

    async def seed_quality_sources() -> None:
        # the demo checks read these tables: create them before the first check runs
        db = app[DATABASE]
        async with db.connection() as conn:
            await quality_demo.seed(conn)

    async def seed_history() -> None:
        db, health = app[DATABASE], app[HEALTH]
        history = demo_history(datetime.now(UTC))
        async with db.transaction() as conn:
            if await health_store.demo_seeded(conn, db):
                return
            await health_store.insert_history(conn, db, history, health.rules)
        log.info("demo health history seeded", extra={"rows": len(history)})

    async def seed_alerts() -> None:
        added = await alert_store.seed_demo(app[DATABASE])
        if added:
            log.info("demo alerts seeded", extra={"alerts": added})

    async def seed_performance_logs() -> None:
        db = app[DATABASE]
        if await log_queries.count_logs(db):
            return
        rows = demo_rows(datetime.now(UTC))
        await performance_logs.ingest(app, rows, 0)
        log.info("seeded demo performance logs", extra={"rows": len(rows)})

    leadership.add_setup("demo:quality-sources", seed_quality_sources)
    leadership.add_setup("demo:health-history", seed_history)
    leadership.add_setup("demo:alerts", seed_alerts)
    leadership.add_setup("demo:performance-logs", seed_performance_logs)
