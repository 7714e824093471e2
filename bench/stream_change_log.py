"""What the stream's change log (migration 7) costs a health push.

Every sample is copied into ``change_log`` by a statement trigger (and a status transition,
when there is one, by the series' triggers). Measured in one database, in alternating rounds
with the triggers enabled and disabled (the baseline: what a push cost before the log):

1. median latency of single pushes through the API (the service's whole write path);
2. a 1,000-row INSERT into ``system_health_metrics`` (the per-row cost of the copy).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer

from bench.harness import Figure, percentile, scratch_database
from exporter.config import parse_config
from exporter.features.core import DATABASE
from exporter.web.app import create_app

CONFIG: dict[str, Any] = {"auth": {"disabled": True}, "host": {"enabled": False}}
TRIGGERS = [
    ("system_health_metrics", "system_health_metrics_change_log"),
    ("health_series", "health_series_transitions_insert"),
    ("health_series", "health_series_transitions_update"),
]
PUSHES = 300
BULK = (
    "INSERT INTO monitoring.system_health_metrics (service_name, metric_type, value, status)"
    " SELECT 'bulk-' || (i % 50), 'latency', i, 'healthy' FROM generate_series(1, 1000) i"
)


async def logging(conn: asyncpg.Connection, on: bool) -> None:
    """Enable or disable the change-log triggers of health pushes."""
    verb = "ENABLE" if on else "DISABLE"
    for table, trigger in TRIGGERS:
        await conn.execute(f"ALTER TABLE monitoring.{table} {verb} TRIGGER {trigger}")


async def pushes(client: TestClient[Any, Any], count: int) -> list[float]:
    out = []
    for i in range(count):
        # some values cross the thresholds: transitions are logged too, as in real traffic
        body = {
            "service": f"service-{i % 50}",
            "metric_type": "latency",
            "value": (i * 37) % 1500,
            "unit": "ms",
            "thresholds": {"warning": 500, "critical": 1000},
        }
        started = time.perf_counter()
        resp = await client.post("/api/v1/health-metrics", json=body)
        await resp.read()
        out.append(time.perf_counter() - started)
        assert resp.status == 201, await resp.text()
    return out


async def bulk(conn: asyncpg.Connection) -> float:
    started = time.perf_counter()
    await conn.execute(BULK)
    return time.perf_counter() - started


async def run(rounds: int) -> list[Figure]:
    """Both figures, logging on against logging off in the same run."""
    async with scratch_database() as url:
        app = create_app(parse_config(CONFIG), dsn=url)
        client: TestClient[Any, Any] = TestClient(TestServer(app))
        await client.start_server()
        owner = await asyncpg.connect(url)
        try:
            await app[DATABASE].wait_ready()
            await pushes(client, 50)  # warm up the pool and the code paths
            with_log: dict[str, list[float]] = {"p50": [], "p99": [], "bulk": []}
            without: dict[str, list[float]] = {"p50": [], "p99": [], "bulk": []}
            for r in range(max(rounds, 3) * 2):
                on = r % 2 == 0
                await logging(owner, on)
                into = with_log if on else without
                latencies = await pushes(client, PUSHES)
                into["p50"].append(statistics.median(latencies))
                into["p99"].append(percentile(latencies, 99))
                into["bulk"].append(await bulk(owner))
            await logging(owner, True)
        finally:
            await owner.close()
            await client.close()
    figures = []
    for key, name in [
        ("p50", "median single health push (API), change log on"),
        ("p99", "p99 single health push (API), change log on"),
        ("bulk", "1,000-row INSERT into system_health_metrics, change log on"),
    ]:
        value, baseline = statistics.median(with_log[key]), statistics.median(without[key])
        figures.append(
            Figure(
                name,
                value * 1e3,
                "ms",
                target="",
                baseline=baseline * 1e3,
                baseline_name="same, change-log triggers disabled",
                met=None,
            )
        )
    return figures
