"""What every benchmark shares: figures with targets, median timing, a scratch database."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from exporter.storage.migrate import migrate
from tests.support.postgres import admin_url_from_env, create_database, drop_database


@dataclass(frozen=True)
class Figure:
    """One measured figure, optionally compared with a baseline measured in the same run."""

    name: str
    value: float
    unit: str
    target: str = ""
    baseline: float | None = None
    baseline_name: str = ""
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        """value / baseline, when there is a baseline."""
        if self.baseline in (None, 0):
            return None
        assert self.baseline is not None
        return self.value / self.baseline


def median_seconds(fn: Callable[[], object], rounds: int, repeat: int = 1) -> float:
    """Median over ``rounds`` of the time of ``repeat`` calls of ``fn``, per call."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeat):
            fn()
        samples.append((time.perf_counter() - started) / repeat)
    return statistics.median(samples)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values`` by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


async def checkpoint(dsn: str) -> None:
    """Write out what earlier phases left dirty, so a phase does not pay for another's writes.

    The pgbench documentation advises the same before each run: a checkpoint that a previous
    burst made due otherwise lands in whatever is measured next.
    """
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


@asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    """A fresh, migrated database on the test server, checkpointed, dropped afterwards."""
    admin = admin_url_from_env()
    url = await create_database(admin)
    try:
        conn = await asyncpg.connect(url)
        try:
            await migrate(conn, "monitoring")
        finally:
            await conn.close()
        await checkpoint(admin)
        yield url
    finally:
        await drop_database(admin, url)


# ----------------------------------------------------------------------------- load generation
#
# The machine has two cores shared by the server, PostgreSQL and the load generator, so a
# cheap generator leaves more of them to what is measured. ``wrk`` (C, epoll; the Debian
# package ``wrk``) is used for closed-loop throughput when it is installed, with a Lua script
# per benchmark; without it the benchmarks fall back to their asyncio senders. Both sides of
# a ratio are always measured with the same generator in the same run.

WRK = shutil.which("wrk")

# appended to every wrk script: the summary as one JSON line on stdout
_WRK_DONE = """
function done(summary, latency, requests)
  io.write(string.format('WRKJSON {"requests":%d,"duration_us":%d,"status_errors":%d,'
    .. '"socket_errors":%d,"p50_us":%d,"p99_us":%d}\\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


@dataclass(frozen=True)
class WrkRun:
    """What one wrk run measured."""

    requests: int
    seconds: float
    status_errors: int  # responses with a status >= 400
    socket_errors: int
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        """Completed requests per second."""
        return self.requests / self.seconds


async def run_wrk(
    url: str, script: str, *, seconds: float, connections: int, args: Sequence[str] = ()
) -> WrkRun:
    """Run wrk (one thread: it is far cheaper than the server) against ``url`` with ``script``.

    Raises when any request failed, so a rate never counts errors as work done.
    """
    assert WRK is not None, "wrk is not installed"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script + _WRK_DONE)
    try:
        proc = await asyncio.create_subprocess_exec(
            WRK, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
            "-s", f.name, url, "--", *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
    finally:
        os.unlink(f.name)
    for line in out.decode().splitlines():
        if line.startswith("WRKJSON "):
            s = json.loads(line[8:])
            run = WrkRun(
                s["requests"], s["duration_us"] / 1e6, s["status_errors"], s["socket_errors"],
                s["p50_us"] / 1000, s["p99_us"] / 1000,
            )  # fmt: skip
            if run.status_errors or run.socket_errors:
                raise RuntimeError(f"wrk {url}: {run}")
            return run
    raise RuntimeError(f"wrk failed ({proc.returncode}): {err.decode()[-500:]}")


class Connection:
    """A keep-alive HTTP/1.1 connection with almost no client-side overhead."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        """Connect to 127.0.0.1:``port``."""
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, request: bytes) -> int:
        """Send one request and read the whole response; its status."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        """Close the connection."""
        self.writer.close()


def http_request(path: str, body: bytes, content_type: str, token: str | None = None) -> bytes:
    """A complete POST request (head and body) ready to write on a Connection."""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def open_loop(conns: list[Connection], requests: Sequence[bytes], rate: float) -> list[float]:
    """Send prepared ``requests`` at a fixed total ``rate`` (open loop) over ``conns``.

    Request i is due at ``start + i / rate`` and goes on whichever connection is free first,
    like a pooled HTTP client; each latency (s) runs from the due time, so a late sender or
    no free connection counts against the server (no coordinated omission). One sender per
    connection taking the next due request, with requests built beforehand, keeps the
    generator cheap: it shares the machine's two cores with what it measures.
    """
    latencies: list[float] = []
    failures: list[int] = []
    start = time.perf_counter() + 0.01
    taken = 0

    async def sender(conn: Connection) -> None:
        nonlocal taken
        while taken < len(requests):
            i, taken = taken, taken + 1
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            status = await conn.send(requests[i])
            latencies.append(time.perf_counter() - due)
            if status >= 400:
                failures.append(status)

    await asyncio.gather(*(sender(c) for c in conns))
    if failures:
        raise RuntimeError(f"{len(failures)} requests failed, e.g. status {failures[0]}")
    return latencies


def run_like_the_service(app: web.Application, port: int) -> None:
    """Serve ``app`` on 127.0.0.1:``port`` as ``monitoring-exporter serve`` runs: on the
    service's event loop, with the heap settled once started, without access logs."""
    from exporter.service import new_event_loop, settle_heap

    async def settle(_app: web.Application) -> None:
        settle_heap()

    app.on_startup.append(settle)
    web.run_app(
        app, host="127.0.0.1", port=port, access_log=None, print=None, loop=new_event_loop()
    )
