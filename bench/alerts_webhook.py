"""Alertmanager webhooks of 10 alerts each from concurrent senders, against the real app over
HTTP on loopback: alerts/s stored, against a baseline that stores each alert with its own
statement (one autocommit INSERT per alert) in the same run; and webhook p99 at half the rate.

The server runs in a child process (``python -m bench.alerts_webhook SERVE DSN PORT``) so the
senders do not share its event loop. Throughput is driven by ``wrk`` when it is installed (a
Lua script builds a fresh notification per request: repeated alerts would be absorbed as
duplicates without a write), else by asyncio senders; ours and the baseline always use the
same generator. The latency figure is an open loop of prepared requests at half the rate for
5 s, after a CHECKPOINT and 3 s at that rate that are discarded (the aftermath of the
saturating rounds is not steady state at half the rate).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import socket
import statistics
import sys
import time
from datetime import UTC, datetime

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

TOKEN = "bench-token"
SENDERS = 32
ALERTS_PER_WEBHOOK = 10
_counter = itertools.count()

# wrk: a new notification per request (same shape as _payload), unique per run and request
_WRK_SCRIPT = """
local counter = 0
local prefix
local starts = os.date("!%Y-%m-%dT%H:%M:%S+00:00")
local head = '{"version":"4","status":"firing","receiver":"bench","groupKey":"{}","alerts":['
function init(args)
  prefix = args[1]
  wrk.path = args[2]
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[3]
end
function request()
  counter = counter + 1
  local alerts = {}
  for i = 0, __N__ do
    alerts[#alerts + 1] = string.format('{"status":"firing","labels":{"alertname":"BenchAlert",'
      .. '"instance":"host-%s-%d-%d","severity":"warning"},"annotations":{"summary":"bench"},'
      .. '"startsAt":"%s","endsAt":"0001-01-01T00:00:00Z",'
      .. '"generatorURL":"http://prometheus/graph","fingerprint":"%s%012x%04x"}',
      prefix, counter, i, starts, prefix, counter, i)
  end
  return wrk.format(nil, nil, nil, head .. table.concat(alerts, ",") .. "]}")
end
""".replace("__N__", str(ALERTS_PER_WEBHOOK - 1))


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
    return http_request(path, body, "application/json", TOKEN)


async def _connect(port: int, n: int) -> list[Connection]:
    return [await Connection.open(port) for _ in range(n)]


async def _throughput(conns: list[Connection], port: int, path: str, seconds: float) -> float:
    """Closed loop: every sender posts back to back; alerts committed per second."""
    if WRK is not None:
        prefix = secrets.token_hex(4)  # fingerprints never repeat across runs
        run = await run_wrk(
            f"http://127.0.0.1:{port}", _WRK_SCRIPT, seconds=seconds, connections=SENDERS,
            args=(prefix, path, TOKEN),
        )  # fmt: skip
        return run.rate * ALERTS_PER_WEBHOOK
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
    requests = [_request(path, _payload()) for _ in range(int(per_second * seconds))]
    return await open_loop(conns, requests, per_second)


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
            await _throughput(conns, port, "/api/v1/alertmanager", 1.0)  # warm up
            ours, base = [], []
            for _ in range(rounds):
                ours.append(await _throughput(conns, port, "/api/v1/alertmanager", 3.0))
                base.append(await _throughput(conns, port, "/bench/alertmanager-baseline", 2.0))
            rate, baseline = statistics.median(ours), statistics.median(base)
            half = rate / 2 / ALERTS_PER_WEBHOOK
            # steady state at half the rate: the saturating rounds' writes are checkpointed
            # first, and the first seconds at the new rate are discarded
            await checkpoint(dsn)
            await _latencies(conns, "/api/v1/alertmanager", half, 3.0)
            lat = await _latencies(conns, "/api/v1/alertmanager", half, 5.0)
            p99 = percentile(lat, 99) * 1000
        finally:
            server.terminate()
            await server.wait()
    generator = "wrk" if WRK else "asyncio senders"
    return [
        Figure(f"webhook alerts stored per second ({generator})", rate, "alerts/s",
               target=">= 15000/s and >= 10x baseline", baseline=baseline,
               baseline_name="one INSERT statement per alert",
               met=rate >= 15_000 and rate >= 10 * baseline),
        Figure(f"webhook p99 at {half * ALERTS_PER_WEBHOOK:,.0f} alerts/s", p99, "ms",
               target="<= 25 ms", met=p99 <= 25),
    ]  # fmt: skip


def _serve(dsn: str, port: int) -> None:
    """The real app plus the baseline route, listening on ``port``."""
    import msgspec
    from aiohttp import web

    from exporter.config import parse_config
    from exporter.features.core import DATABASE
    from exporter.inputs import alertmanager as webhook
    from exporter.web.app import create_app

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
                    a.fingerprint, a.starts_at, a.alert_type, a.severity, a.title,
                    msgspec.json.encode(a.labels).decode(),
                    msgspec.json.encode(a.annotations).decode(),
                )  # fmt: skip
        return web.json_response({"alerts": len(notification.alerts)})

    app.router.add_post("/bench/alertmanager-baseline", baseline)
    run_like_the_service(app, port)


if __name__ == "__main__" and sys.argv[1:2] == ["SERVE"]:
    _serve(sys.argv[2], int(sys.argv[3]))
