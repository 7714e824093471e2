"""The performance-log rollups at scale: 10 million records over 24 hours (opt-in by name:
``python -m bench performance_rollups``; it needs about 5 GB of disk and several minutes).

1. Load 10,000,000 records spread over the 24 hours before now, through the real table: each
   ``INSERT … SELECT`` of generated rows (a time slice of 500,000 records, in time order as an
   ingest would write them) fires the rollup trigger, which keeps the minute and hour rollups
   and the histogram. Timed, but not a target. Then ``VACUUM ANALYZE``, as autovacuum would.
2. The 24 h summary (``GET /api/v1/performance-logs/summary`` of the real app, in a child
   process) against the exact ``percentile_cont`` query over the raw table for the same window
   (the old summary), both timed in this run; p50/p95/p99 of every operation compared.
3. Each SQL panel of ``grafana/dashboards/performance.json`` over the same 24 h, with Grafana's
   macros filled in, as a reader login (what Grafana's datasource uses).
4. Batched HTTP ingest (rollups kept) against raw asyncpg unnest without the rollup upkeep,
   into the same 10-million-row table.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import asyncpg

from bench.harness import Figure, checkpoint, scratch_database
from bench.performance_logs import (
    BATCH,
    NDJSON,
    SENDERS,
    URL,
    _wait_ready,
    closed_loop,
    free_port,
    raw_unnest,
)

#: not run by a bare ``python -m bench``: it loads 10 million rows
OPT_IN = True

RECORDS = 10_000_000
CHUNK = 500_000
DAY = timedelta(hours=24)
DASHBOARD = Path(__file__).resolve().parents[1] / "grafana" / "dashboards" / "performance.json"

# (operation_type, operation_name, median ms, sigma of ln, share of records)
OPERATIONS = [
    ("api_call", "GET /api/orders", 35.0, 0.7, 0.25),
    ("api_call", "GET /api/dashboard", 80.0, 0.9, 0.2),
    ("api_call", "POST /api/orders", 120.0, 0.8, 0.1),
    ("api_call", "GET /api/products", 20.0, 0.6, 0.15),
    ("api_call", "GET /api/health", 2.0, 0.5, 0.1),
    ("api_call", "PUT /api/settings", 60.0, 1.0, 0.05),
    ("data_sync", "shopify_orders", 8000.0, 0.6, 0.05),
    ("data_sync", "kajabi_members", 15000.0, 0.7, 0.04),
    ("data_sync", "warehouse_stock", 30000.0, 0.5, 0.03),
    ("report_generation", "daily_revenue", 5000.0, 0.8, 0.02),
    ("report_generation", "member_export", 45000.0, 0.9, 0.01),
]

# Generated in PostgreSQL (no transfer, no client in the way): the operation by its share
# (width_bucket over the cumulative shares), a log-normal duration by Box-Muller, 2 % errors
# and 0.5 % timeouts, small request details.
LOAD = """
WITH g AS (
    SELECT $1::timestamptz + ($2::float8 * (s + random()) / $8) * interval '1 second' AS at,
           width_bucket(random(), $7::float8[]) AS i, random() AS u1, random() AS u2,
           random() AS fate
    FROM generate_series(0, $8 - 1) AS s
)
INSERT INTO monitoring.system_performance_logs
    (operation_type, operation_name, duration_ms, status, user_id, request_details, recorded_at)
SELECT ($3::text[])[i], ($4::text[])[i],
       exp(ln(($5::float8[])[i])
           + ($6::float8[])[i] * sqrt(-2 * ln(1 - u1)) * cos(2 * pi() * u2)),
       CASE WHEN fate < 0.02 THEN 'error' WHEN fate < 0.025 THEN 'timeout' ELSE 'success' END,
       'user_' || (u2 * 1000)::int,
       jsonb_build_object('path', ($4::text[])[i], 'attempt', 1),
       at
FROM g
"""

EXACT = """
SELECT operation_type, operation_name, count(*) AS count,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms) AS p95_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99_ms
FROM monitoring.system_performance_logs
WHERE recorded_at >= $1 AND recorded_at < $2
GROUP BY operation_type, operation_name
"""


def progress(message: str) -> None:
    """A line on stderr, at once."""
    print(f"  [performance_rollups] {message}", file=sys.stderr, flush=True)


async def load(dsn: str, end: datetime) -> float:
    """Insert RECORDS records over the 24 h before ``end``; the seconds it took."""
    conn = await asyncpg.connect(dsn)
    started = time.perf_counter()
    try:
        await conn.execute("SELECT setseed(0.15)")
        types, names, medians, sigmas, shares = (list(c) for c in zip(*OPERATIONS, strict=True))
        starts = [sum(shares[:i]) for i in range(len(shares))]  # each operation's lower bound
        chunks = RECORDS // CHUNK
        span = DAY.total_seconds() / chunks
        for i in range(chunks):
            t0 = time.perf_counter()
            await conn.execute(
                LOAD, end - DAY + i * timedelta(seconds=span), span, types, names, medians,
                sigmas, starts, CHUNK,
            )  # fmt: skip
            done = (i + 1) * CHUNK
            progress(
                f"loaded {done:,} of {RECORDS:,} records ({time.perf_counter() - t0:.1f} s for"
                f" this {CHUNK:,}, {time.perf_counter() - started:.0f} s in all)"
            )
        progress("VACUUM ANALYZE")
        await conn.execute("VACUUM ANALYZE monitoring.system_performance_logs")
        await conn.execute("VACUUM ANALYZE monitoring.performance_log_rollups_minute")
        await conn.execute("VACUUM ANALYZE monitoring.performance_log_rollups_hour")
    finally:
        await conn.close()
    return time.perf_counter() - started


def panel_queries() -> list[tuple[str, str]]:
    """(title, SQL) of every SQL panel of the performance dashboard."""
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            if "rawSql" in target:
                found.append((panel["title"], target["rawSql"]))
    return found


def grafana_sql(sql: str, since: datetime, until: datetime, types: list[str]) -> str:
    """The SQL as Grafana's PostgreSQL datasource sends it for a time range and variables."""
    since_s, until_s = f"'{since.isoformat()}'", f"'{until.isoformat()}'"
    sql = re.sub(
        r"\$__timeFilter\((\w+)\)", lambda m: f"{m.group(1)} BETWEEN {since_s} AND {until_s}", sql
    )
    sql = sql.replace("$__timeFrom()", since_s).replace("$__timeTo()", until_s)
    return sql.replace("$operation_type", ", ".join(f"'{t}'" for t in types))


async def reader_login(dsn: str) -> str:
    """A login granted only monitoring_reader (Grafana's datasource), as a URL."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bench_reader')"
            " THEN CREATE ROLE bench_reader LOGIN; END IF; END $$"
        )
        await conn.execute("GRANT monitoring_reader TO bench_reader")
    finally:
        await conn.close()
    head, _, tail = dsn.partition("://")
    return f"{head}://bench_reader@{tail.rpartition('@')[2]}"


async def timed(conn: asyncpg.Connection, sql: str, *args: Any, rounds: int) -> float:
    """Median seconds of ``rounds`` runs (after one discarded)."""
    await conn.fetch(sql, *args)
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await conn.fetch(sql, *args)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


async def run(rounds: int) -> list[Figure]:
    """Load, then time the summary, the panels and the ingest."""
    rounds = max(3, rounds)
    async with scratch_database() as dsn:
        end = datetime.now(UTC).replace(microsecond=0)
        loaded = await load(dsn, end)
        await checkpoint(dsn)
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.performance_logs", "serve", dsn, str(port),
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )  # fmt: skip
        try:
            figures = await _measure(rounds, dsn, f"http://127.0.0.1:{port}", end)
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
    return [
        Figure("load 10 M records over 24 h (rollups kept)", loaded, "s", "informational"),
        *figures,
    ]


async def _measure(rounds: int, dsn: str, base: str, end: datetime) -> list[Figure]:
    figures: list[Figure] = []
    # the window of the data, its edges off the minute (raw edge rows are read too)
    since, until = end - DAY + timedelta(seconds=17), end - timedelta(seconds=3)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _wait_ready(session, base)
        url = (
            f"{base}{URL}/summary?since={quote(since.isoformat())}&until={quote(until.isoformat())}"
        )

        async def summary() -> tuple[float, dict[str, Any]]:
            started = time.perf_counter()
            async with session.get(url) as resp:
                body = await resp.json()
                assert resp.status == 200, body
            return time.perf_counter() - started, body

        await summary()
        samples = [await summary() for _ in range(max(rounds, 7))]
        api_seconds = statistics.median(s for s, _ in samples)
        body = samples[-1][1]
        progress(f"summary over 24 h: {api_seconds * 1000:.1f} ms (median)")

        conn = await asyncpg.connect(dsn)
        try:
            exact_samples, exact_rows = [], []
            for i in range(min(rounds, 3)):
                started = time.perf_counter()
                exact_rows = await conn.fetch(EXACT, since, until)
                exact_samples.append(time.perf_counter() - started)
                progress(f"exact percentile_cont summary, round {i + 1}: {exact_samples[-1]:.1f} s")
            exact_seconds = statistics.median(exact_samples)
        finally:
            await conn.close()
        exact = {(r["operation_type"], r["operation_name"]): r for r in exact_rows}
        worst = 0.0
        for item in body["items"]:
            want = exact[(item["operation_type"], item["operation_name"])]
            assert item["count"] == want["count"], (item, dict(want))
            for q in ("p50_ms", "p95_ms", "p99_ms"):
                worst = max(worst, abs(item[q] - want[q]) / want[q])
        assert len(body["items"]) == len(exact)
        figures += [
            Figure(
                "24 h summary (API) vs exact percentile_cont",
                api_seconds * 1000,
                "ms",
                "<= 100 ms and <= 0.01x exact",
                exact_seconds * 1000,
                "percentile_cont on raw rows",
                api_seconds <= 0.1 and api_seconds <= 0.01 * exact_seconds,
            ),
            Figure(
                "p50/p95/p99 worst relative error",
                worst * 100,
                "%",
                "<= 1 %",
                met=worst <= 0.01,
            ),
        ]

        reader = await asyncpg.connect(await reader_login(dsn))
        try:
            types = sorted({t for t, *_ in OPERATIONS})
            for title, sql in panel_queries():
                seconds = await timed(reader, grafana_sql(sql, since, until, types), rounds=rounds)
                progress(f"panel {title!r}: {seconds * 1000:.1f} ms")
                figures.append(
                    Figure(f"panel: {title} (24 h)", seconds * 1000, "ms", "< 200 ms",
                           met=seconds < 0.2)
                )  # fmt: skip
        finally:
            await reader.close()

        async def batched() -> float:
            return BATCH * await closed_loop(session, base + URL, NDJSON, "application/x-ndjson",
                                             SENDERS, 2)  # fmt: skip

        await checkpoint(dsn)
        await batched()
        pairs = [(await batched(), await raw_unnest(dsn)) for _ in range(rounds)]
        ours = statistics.median(p[0] for p in pairs)
        raw = statistics.median(p[1] for p in pairs)
        progress(f"ingest {ours:,.0f} rows/s vs raw unnest {raw:,.0f} rows/s")
        figures.append(
            Figure(
                "batched ingest (rollups kept) at 10 M rows",
                ours,
                "rows/s",
                ">= 0.8x raw unnest without rollups",
                raw,
                "raw unnest, no rollups",
                ours >= 0.8 * raw,
            )
        )
    return figures
