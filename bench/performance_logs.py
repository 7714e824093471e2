"""Performance-log ingest over HTTP on loopback, against baselines measured in the same run.

The server is the real app (``create_app``) in a subprocess (``python -m bench.performance_logs
serve DSN PORT``) with two bench-only routes added here, never in the product:
``POST /bench/noop`` (reads the body, touches no database) and ``POST /bench/insert-each``
(one INSERT per request, the naive baseline). The machine's two cores are shared by the
server, PostgreSQL and the load generator, so closed-loop rates are driven by ``wrk`` when it
is installed (far cheaper per request than any Python client), else by an aiohttp
ClientSession with keep-alive workers in this process; every ratio compares two figures
measured with the same generator in the same run. The p99 figure is an open loop of prepared
requests over raw keep-alive connections, after a discarded round of warm-up. Resident
memory is the server process's RSS (psutil), sampled during the batched benchmark.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import psutil

from bench.harness import (
    WRK,
    Connection,
    Figure,
    checkpoint,
    http_request,
    open_loop,
    percentile,
    run_like_the_service,
    run_wrk,
    scratch_database,
)

SECONDS = 1.5  # per measurement round (wrk counts whole seconds: 2 for batched, 1 for single)
BATCH = 1000
SENDERS = 4
SINGLE_WORKERS = (
    128  # group commit needs concurrency to group; the no-db route is client-bound anyway
)
RECORD = {
    "operation_type": "api_call",
    "operation_name": "GET /api/dashboard",
    "duration_ms": 12.5,
    "status": "success",
    "user_id": "user_1",
    "request_details": {"path": "/api/dashboard", "method": "GET"},
}
ONE = json.dumps(RECORD).encode()
NDJSON = b"\n".join([ONE] * BATCH)
URL = "/api/v1/performance-logs"
LATENCY_CONNECTIONS = 64

# wrk: the same request over and over (performance logs have no deduplication); args: the
# file holding the body, the path, the content type
_WRK_SCRIPT = """
function init(args)
  local f = assert(io.open(args[1], "rb"))
  wrk.body = f:read("*a")
  f:close()
  wrk.path = args[2]
  wrk.method = "POST"
  wrk.headers["Content-Type"] = args[3]
end
"""


def free_port() -> int:
    """A free TCP port on loopback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve(dsn: str, port: int, overrides: dict[str, Any] | None = None) -> None:
    """The server process: the real app plus the two bench-only routes."""
    from aiohttp import web

    from exporter.config import parse_config
    from exporter.features.core import DATABASE
    from exporter.web.app import create_app

    app = create_app(parse_config({"auth": {"disabled": True}, **(overrides or {})}), dsn=dsn)

    async def noop(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"committed": 1})

    async def insert_each(request: web.Request) -> web.Response:
        record = json.loads(await request.read())
        async with request.app[DATABASE].transaction() as conn:
            await conn.execute(
                "INSERT INTO monitoring.system_performance_logs (operation_type,"
                " operation_name, duration_ms, status, user_id, request_details, recorded_at)"
                " VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7)",
                record["operation_type"],
                record["operation_name"],
                record["duration_ms"],
                record["status"],
                record["user_id"],
                json.dumps(record["request_details"]),
                datetime.now(UTC),
            )
        return web.json_response({"committed": 1})

    app.router.add_post("/bench/noop", noop)
    app.router.add_post("/bench/insert-each", insert_each)
    run_like_the_service(app, port)


async def closed_loop(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    ctype: str,
    workers: int,
    wrk_seconds: int = 1,
) -> float:
    """Requests per second with ``workers`` senders each keeping one request in flight."""
    if WRK is not None:
        parts = urlsplit(url)
        with tempfile.NamedTemporaryFile(suffix=".body") as f:
            f.write(body)
            f.flush()
            run = await run_wrk(
                f"{parts.scheme}://{parts.netloc}", _WRK_SCRIPT, seconds=wrk_seconds,
                connections=workers, args=(f.name, parts.path, ctype),
            )  # fmt: skip
        return run.rate
    done = 0
    deadline = time.perf_counter() + SECONDS

    async def worker() -> None:
        nonlocal done
        headers = {"Content-Type": ctype}
        while time.perf_counter() < deadline:
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{url}: {resp.status} {await resp.text()}")
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return done / (time.perf_counter() - started)


async def paced_latencies(conns: list[Connection], rate: float) -> list[float]:
    """Latencies (s) of single-record posts sent at a fixed ``rate`` (open loop)."""
    request = http_request(URL, ONE, "application/json")
    return await open_loop(conns, [request] * int(rate * SECONDS), rate)


ROLLUP_TRIGGER = "system_performance_logs_rollups"


async def rollups_enabled(dsn: str, enabled: bool) -> None:
    """Switch the rollup trigger (migration 9) on or off: the raw baseline is the INSERT alone,
    with the same table, indexes and partitions, and none of the rollup upkeep."""
    conn = await asyncpg.connect(dsn)
    try:
        verb = "ENABLE" if enabled else "DISABLE"
        await conn.execute(
            f"ALTER TABLE monitoring.system_performance_logs {verb} TRIGGER {ROLLUP_TRIGGER}"
        )
    finally:
        await conn.close()


async def raw_unnest(dsn: str, *, rollups: bool = False) -> float:
    """Rows per second of asyncpg's unnest INSERT, 1,000 rows per statement, SENDERS at once;
    without the rollup upkeep unless ``rollups``."""
    if not rollups:
        await rollups_enabled(dsn, False)
    try:
        return await _raw_unnest(dsn)
    finally:
        if not rollups:
            await rollups_enabled(dsn, True)


async def _raw_unnest(dsn: str) -> float:
    rows = [
        [RECORD["operation_type"]] * BATCH,
        [RECORD["operation_name"]] * BATCH,
        [RECORD["duration_ms"]] * BATCH,
        [RECORD["status"]] * BATCH,
        [RECORD["user_id"]] * BATCH,
        [json.dumps(RECORD["request_details"])] * BATCH,
        [datetime.now(UTC)] * BATCH,
    ]
    sql = (
        "INSERT INTO monitoring.system_performance_logs (operation_type, operation_name,"
        " duration_ms, status, user_id, request_details, recorded_at)"
        " SELECT a, b, c, d, e, f::jsonb, g FROM unnest($1::text[], $2::text[], $3::float8[],"
        " $4::text[], $5::text[], $6::text[], $7::timestamptz[]) AS x(a, b, c, d, e, f, g)"
    )
    conns = [await asyncpg.connect(dsn) for _ in range(SENDERS)]
    done = 0
    deadline = time.perf_counter() + SECONDS

    async def worker(conn: asyncpg.Connection) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await conn.execute(sql, *rows)
            done += BATCH

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for conn in conns:
            await conn.close()
    return done / (time.perf_counter() - started)


async def run(rounds: int) -> list[Figure]:
    """Batched and single-record ingest, with their baselines, and the server's memory."""
    rounds = max(1, min(rounds, 5))
    async with scratch_database() as dsn:
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.performance_logs", "serve", dsn, str(port),
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            return await _measure(rounds, dsn, base, psutil.Process(proc.pid))
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)


async def _measure(rounds: int, dsn: str, base: str, server: psutil.Process) -> list[Figure]:
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await _wait_ready(session, base)
        nd = "application/x-ndjson"
        js = "application/json"
        rss: list[int] = []
        sampling = asyncio.create_task(_sample_rss(server, rss))

        async def batched() -> float:
            return BATCH * await closed_loop(session, base + URL, NDJSON, nd, SENDERS, 2)

        # paired measurements alternate round by round, so both sides of a ratio see the
        # same background load (the machine is shared); each figure is a median
        try:
            await batched()  # warm-up: pool connections, plans, partitions
            trios = [
                (await batched(), await raw_unnest(dsn), await raw_unnest(dsn, rollups=True))
                for _ in range(rounds)
            ]
        finally:
            sampling.cancel()
        batched_rate = statistics.median(t[0] for t in trios)
        raw_rate = statistics.median(t[1] for t in trios)
        raw_rollups_rate = statistics.median(t[2] for t in trios)

        async def single(path: str) -> float:
            return await closed_loop(session, base + path, ONE, js, SINGLE_WORKERS)

        await single(URL)
        await single("/bench/noop")
        trios = [
            (await single(URL), await single("/bench/noop"), await single("/bench/insert-each"))
            for _ in range(rounds)
        ]
        single_rate = statistics.median(t[0] for t in trios)
        noop_rate = statistics.median(t[1] for t in trios)
        each_rate = statistics.median(t[2] for t in trios)
        port = int(base.rsplit(":", 1)[1])
        conns = [await Connection.open(port) for _ in range(LATENCY_CONNECTIONS)]
        try:
            await checkpoint(dsn)  # the saturating rounds' writes are not this phase's
            await paced_latencies(conns, single_rate / 2)  # warm up, discarded
            p99s = []
            for _ in range(rounds):
                latencies = await paced_latencies(conns, single_rate / 2)
                p99s.append(percentile(latencies, 99) * 1000)
        finally:
            for conn in conns:
                conn.close()
        p99 = statistics.median(p99s)
    peak_mb = max(rss, default=0) / 2**20
    return [
        Figure(
            "batched ingest (1,000/request, 4 senders)",
            batched_rate,
            "rows/s",
            ">= 100,000 rows/s",
            met=batched_rate >= 100_000,
        ),
        Figure(
            "batched ingest (rollups kept) vs raw unnest",
            batched_rate,
            "rows/s",
            ">= 0.8x raw unnest without rollups",
            raw_rate,
            "raw unnest, no rollups",
            batched_rate >= 0.8 * raw_rate,
        ),
        Figure(
            "raw unnest with rollups vs without",
            raw_rollups_rate,
            "rows/s",
            "informational: the trigger's cost",
            raw_rate,
            "raw unnest, no rollups",
        ),
        Figure(
            "one record/request vs no-database POST",
            single_rate,
            "req/s",
            ">= 0.7x no-db POST",
            noop_rate,
            "no-db POST",
            single_rate >= 0.7 * noop_rate,
        ),
        Figure(
            "one record/request vs INSERT per request",
            single_rate,
            "req/s",
            ">= 2x INSERT each",
            each_rate,
            "INSERT each",
            single_rate >= 2 * each_rate,
        ),
        Figure("p99 latency at half max single rate", p99, "ms", "<= 10 ms", met=p99 <= 10),
        Figure("server RSS peak during batched", peak_mb, "MB", "< 250 MB", met=peak_mb < 250),
    ]


async def _wait_ready(session: aiohttp.ClientSession, base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            async with session.get(base + "/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("bench server not ready")


async def _sample_rss(process: psutil.Process, out: list[int]) -> None:
    while True:
        out.append(process.memory_info().rss)
        await asyncio.sleep(0.05)


def main(argv: list[str]) -> None:
    """``serve DSN PORT``: run the bench server."""
    if len(argv) in (3, 4) and argv[0] == "serve":
        serve(argv[1], int(argv[2]), json.loads(argv[3]) if len(argv) == 4 else None)
    else:
        raise SystemExit("usage: python -m bench.performance_logs serve DSN PORT [CONFIG-JSON]")


if __name__ == "__main__":
    main(sys.argv[1:])
