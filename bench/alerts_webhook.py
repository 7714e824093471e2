"""Alertmanager webhooks of 10 alerts each from concurrent senders, against the real app over
HTTP on loopback: alerts/s stored, against a baseline that stores each alert with its own
statement (one autocommit INSERT per alert) in the same run; and webhook p99 at half the rate.

The server runs in a child process (``python -m bench.alerts_webhook SERVE DSN PORT``) so the
senders do not share its event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import statistics
import sys
import time
from datetime import UTC, datetime

from bench.harness import Figure, percentile, scratch_database

TOKEN = "bench-token"
SENDERS = 32
ALERTS_PER_WEBHOOK = 10
_counter = itertools.count()


def _payload() -> bytes:
    n = next(_counter)
    starts = datetime.now(UTC).isoformat()
    alerts = [
        {
            "status": "firing",
            "labels": {
                "alertname": "BenchAlert",
                "instance": f"host-{n}-{i}",
                "severity": "warning",
            },
            "annotations": {"summary": "bench"},
            "startsAt": starts,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph",
            "fingerprint": f"{n:012x}{i:04x}",
        }
        for i in range(ALERTS_PER_WEBHOOK)
    ]
    body = {
        "version": "4",
        "status": "firing",
        "receiver": "bench",
        "groupKey": "{}",
        "alerts": alerts,
    }
    return json.dumps(body).encode()


def _request(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Connection:
    """A keep-alive HTTP/1.1 connection with almost no client-side overhead."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

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


async def _connect(port: int, n: int) -> list[Connection]:
    return [Connection(*await asyncio.open_connection("127.0.0.1", port)) for _ in range(n)]


async def _throughput(conns: list[Connection], path: str, seconds: float) -> float:
    """Closed loop: every sender posts back to back; alerts committed per second."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def sender(conn: Connection) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            status = await conn.send(_request(path, _payload()))
            if status != 200:
                raise RuntimeError(f"webhook answered {status}")
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(sender(c) for c in conns))
    return done * ALERTS_PER_WEBHOOK / (time.perf_counter() - started)


async def _latencies(
    conns: list[Connection], path: str, per_second: float, seconds: float
) -> list[float]:
    """Open loop at a fixed rate: latency of each webhook from its scheduled send time."""
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for c in conns:
        idle.put_nowait(c)
    results: list[float] = []
    interval = 1 / per_second
    start = time.perf_counter()

    async def one(at: float, request: bytes) -> None:
        conn = await idle.get()
        await conn.send(request)
        results.append(time.perf_counter() - at)
        idle.put_nowait(conn)

    tasks = []
    for i in range(int(per_second * seconds)):
        at = start + i * interval
        request = _request(path, _payload())
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(at, request)))
    await asyncio.gather(*tasks)
    return results


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def run(rounds: int) -> list[Figure]:
    """Measure ours and the baseline in alternating rounds; medians."""
    async with scratch_database() as dsn:
        port = _free_port()
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.alerts_webhook", "SERVE", dsn, str(port)
        )
        try:
            for _ in range(200):
                try:
                    conns = await _connect(port, SENDERS)
                    break
                except OSError:
                    await asyncio.sleep(0.1)
            ready = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            for _ in range(300):  # the pool connects in the background: wait for /readyz
                if await conns[0].send(ready) == 200:
                    break
                await asyncio.sleep(0.1)
            await _throughput(conns, "/api/v1/alertmanager", 1.0)  # warm up
            ours, base = [], []
            for _ in range(rounds):
                ours.append(await _throughput(conns, "/api/v1/alertmanager", 3.0))
                base.append(await _throughput(conns, "/bench/alertmanager-baseline", 2.0))
            rate, baseline = statistics.median(ours), statistics.median(base)
            half = rate / 2 / ALERTS_PER_WEBHOOK
            lat = await _latencies(conns, "/api/v1/alertmanager", half, 4.0)
            p99 = percentile(lat, 99) * 1000
        finally:
            server.terminate()
            await server.wait()
    return [
        Figure("webhook alerts stored per second", rate, "alerts/s",
               target=">= 15000/s and >= 10x baseline", baseline=baseline,
               baseline_name="one INSERT statement per alert",
               met=rate >= 15_000 and rate >= 10 * baseline),
        Figure(f"webhook p99 at {half * ALERTS_PER_WEBHOOK:,.0f} alerts/s", p99, "ms",
               target="<= 25 ms", met=p99 <= 25),
    ]  # fmt: skip


def _serve(dsn: str, port: int) -> None:
    """The real app plus the baseline route, listening on ``port``."""
    from aiohttp import web

    from exporter.config import parse_config
    from exporter.inputs import alertmanager as webhook
    from exporter.web.app import create_app
    from exporter.web.keys import DATABASE

    config = parse_config(
        {"auth": {"tokens": [{"name": "bench", "token": TOKEN, "scopes": ["write"]}]}}
    )
    app = create_app(config, dsn=dsn)

    async def baseline(request: web.Request) -> web.Response:
        notification = webhook.decoder.decode(await request.read())
        async with request.app[DATABASE].connection() as conn:
            for a in map(webhook.to_record, notification.alerts):
                await conn.execute(
                    "INSERT INTO monitoring.system_alerts (fingerprint, starts_at, alert_type,"
                    " severity, title, labels, annotations, source) VALUES ($1, $2, $3, $4, $5,"
                    " $6::jsonb, $7::jsonb, 'alertmanager') ON CONFLICT DO NOTHING",
                    a.fingerprint, a.starts_at, a.alert_type, a.severity, a.title, a.labels,
                    a.annotations,
                )  # fmt: skip
        return web.json_response({"alerts": len(notification.alerts)})

    app.router.add_post("/bench/alertmanager-baseline", baseline)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__" and sys.argv[1:2] == ["SERVE"]:
    _serve(sys.argv[2], int(sys.argv[3]))
