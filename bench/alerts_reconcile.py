"""Reconciliation with Alertmanager: the leader's pass over 10,000 alerts that a real
Alertmanager holds (filled with ``POST /api/v2/alerts``) against 10,000 open incidents.

The pass is the leader's own code (``features.alertmanager.reconcile``) in the real app: it
reads every member's ``/api/v2/status`` and ``/api/v2/alerts``, merges, and writes through
one statement, then looks at silences to extend, alerts to resend and pending work. Its
statements are counted by a query logger on every pooled connection, counting only those
made within the pass (a context variable the pass's tasks inherit), so a statement per
alert would show. The baseline is reading the alert list alone, the floor of any pass.
"""

from __future__ import annotations

import asyncio
import contextvars
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bench.harness import Figure, checkpoint, scratch_database
from exporter.config import parse_config
from exporter.features.alertmanager import reconcile
from exporter.features.core import DATABASE, LEADERSHIP, LIFECYCLE
from exporter.features.leader import Run
from exporter.web.app import create_app
from tests.support.alertmanager import alertmanagers, route_config

ALERTS = 10_000
COUNTING: contextvars.ContextVar[bool] = contextvars.ContextVar("counting", default=False)


class Statements:
    """Counts the statements pooled connections run within a pass."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, record: Any) -> None:
        if COUNTING.get() and not _introspection(record.query):
            self.count += 1


def _introspection(query: str) -> bool:
    """asyncpg's own type lookup (with JIT off around it), run once per connection the first
    time it meets a type: the driver's, not the pass's, and not per alert."""
    return (
        "typeinfo_tree" in query or "set_config('jit'" in query or "current_setting('jit')" in query
    )


def _alerts(start: datetime) -> list[dict[str, Any]]:
    ends = (start + timedelta(hours=2)).isoformat()
    return [
        {
            "labels": {
                "alertname": f"BenchAlert{i % 50}",
                "instance": f"host-{i}",
                "service": f"svc{i % 20}",
                "severity": ("warning", "critical")[i % 2],
            },
            "annotations": {"summary": f"bench alert {i}"},
            "startsAt": (start + timedelta(milliseconds=i)).isoformat(),
            "endsAt": ends,
        }
        for i in range(ALERTS)
    ]


async def _fill(url: str, alerts: list[dict[str, Any]]) -> None:
    async with aiohttp.ClientSession() as http:
        for i in range(0, len(alerts), 1000):
            async with http.post(f"{url}/api/v2/alerts", json=alerts[i : i + 1000]) as resp:
                assert resp.status == 200, await resp.text()


async def _read(url: str) -> float:
    """Seconds to read the alert list and status once (the baseline)."""
    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        for path in ("status", "alerts"):
            async with http.get(f"{url}/api/v2/{path}") as resp:
                await resp.read()
        return time.perf_counter() - started


async def run(rounds: int) -> list[Figure]:
    """A first pass that opens the incidents, then ``rounds`` steady passes."""
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            scratch_database() as dsn,
            alertmanagers(Path(tmp), route_config(None)) as [url],
        ):
            return await _measure(dsn, url, rounds)


async def _measure(dsn: str, url: str, rounds: int) -> list[Figure]:
    hour = "1h"  # the leader's own schedule stays out of the way of the measured passes
    config = parse_config(
        {
            "auth": {"disabled": True},
            "host": {"enabled": False},
            "alerts": {"alertmanager_url": url, "reconcile_interval": hour, "sync_interval": hour,
                       "auto_resolve_interval": hour, "heartbeat_check_interval": hour,
                       "reconcile_startup_grace": "0s", "request_timeout": "30s"},
        }
    )  # fmt: skip
    app = create_app(config, dsn=dsn)
    counter = Statements()
    db = app[DATABASE]
    init = db._init_connection

    async def logged(conn: Any) -> None:
        await init(conn)
        conn.add_query_logger(counter)

    setattr(db, "_init_connection", logged)  # noqa: B010 - before the pool exists
    runner = web.AppRunner(app)
    await runner.setup()
    app[LIFECYCLE].serving.set()
    try:
        leadership = app[LEADERSHIP]
        for _ in range(600):
            if leadership.leading:
                break
            await asyncio.sleep(0.05)
        job = next(j for j in leadership.jobs if j.name == "alertmanager:reconcile")
        await asyncio.sleep(1)  # the term's first passes, over an empty Alertmanager

        async def one_pass() -> tuple[float, int]:
            assert leadership.epoch is not None
            counter.count = 0
            COUNTING.set(True)
            started = time.perf_counter()
            try:
                await reconcile(app, Run(leadership, job, leadership.epoch))
            finally:
                COUNTING.set(False)
            return time.perf_counter() - started, counter.count

        await _fill(url, _alerts(datetime.now(UTC) - timedelta(minutes=5)))
        first, first_statements = await asyncio.create_task(one_pass())
        async with db.connection() as conn:
            opened = await conn.fetchval(
                "SELECT count(*) FROM monitoring.system_alerts WHERE status = 'active'"
            )
        assert opened == ALERTS, opened
        await checkpoint(dsn)
        passes, statements, reads = [], [], []
        for _ in range(rounds):
            seconds, n = await asyncio.create_task(one_pass())
            passes.append(seconds)
            statements.append(n)
            reads.append(await _read(url))
    finally:
        await runner.cleanup()
    steady, baseline = statistics.median(passes), statistics.median(reads)
    return [
        Figure(
            f"pass: {ALERTS:,} alerts vs {ALERTS:,} open incidents",
            steady * 1000, "ms", target="< 2000 ms", baseline=baseline * 1000,
            baseline_name="reading /api/v2/status and /api/v2/alerts alone", met=steady < 2.0,
        ),
        Figure(
            "statements per pass", max(statements), "statements",
            target="bounded: <= 10 whatever the number of alerts", met=max(statements) <= 10,
        ),
        Figure(
            f"first pass: opening {ALERTS:,} incidents", first * 1000, "ms",
            target=f"informational ({first_statements} statements)",
        ),
    ]  # fmt: skip
