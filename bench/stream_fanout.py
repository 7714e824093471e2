"""The change stream's fan-out: 1,000 WebSocket subscribers on the real app and a real
PostgreSQL while health samples are pushed at 500/s. Figures, each against the same run with
a single subscriber: p99 delivery lag from the moment each sample was due to be pushed
(stamped into its ``metadata``) to each receipt, an upper bound of commit to receipt that
counts a slow write too; p99 from each push's answer (committed by then) to the receipt by
the last of its subscribers, a lower bound; and the server's memory per idle subscriber (RSS
with 1,000 idle subscribers less RSS with none, over 1,000).

Three processes share the machine with PostgreSQL: the server (``python -m
bench.stream_fanout SERVE DSN PORT``), the subscribers (``... CLIENTS PORT N``, driven over
stdin/stdout) and the writer (this process, an open loop of pushes on keep-alive connections,
so a late push counts against the service). Only the wire protocol is used (the subscribe
message, events with ``data.metadata``), so the bench keeps working whatever the hub does
inside. Each of the 1,000 subscribers follows one of 100 services (``filter.service``, the
way a dashboard widget follows its service); the pushes go round the 100, so each sample
reaches 10 subscribers (5,000 messages/s). The baseline's one subscriber follows them all.
A round's line on stderr shows where the time went (the pushes' own latency, the cores used).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import resource
import socket
import statistics
import sys
import time
from typing import Any

from bench.harness import Connection, Figure, http_request, percentile, scratch_database

READ_TOKEN = "bench-read"
WRITE_TOKEN = "bench-write"
SUBSCRIBERS = 1000
SERVICES = 100
RATE = 500.0
SECONDS = 5.0
WRITERS = 16
# a round's deliveries must all arrive within this long after the last push (else "lost")
DRAIN_SECONDS = 15.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _raise_fd_limit() -> None:
    """1,000 sockets and a pool need more descriptors than a default soft limit of 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 8192:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(8192, hard), hard))


_numbers = itertools.count()


def _push(service: str, sent: float, n: int) -> bytes:
    body = {
        "service": service,
        "metric_type": "queue_depth",
        "value": 1.0,
        "metadata": {"sent": sent, "n": n},
    }
    return http_request("/api/v1/health-metrics", json.dumps(body).encode(), "application/json",
                        WRITE_TOKEN)  # fmt: skip


class Pushed:
    """What a writing phase did: how many pushes, how long each took from its due time to
    its answer (a late or slow push shows here as well as in the lag), and when each was
    answered (committed by then), by number."""

    def __init__(self) -> None:
        self.count = 0
        self.waited: list[float] = []
        self.answered: dict[int, float] = {}


async def _write(conns: list[Connection], rate: float, seconds: float, start_index: int) -> Pushed:
    """Push ``rate`` samples/s for ``seconds`` (round robin over the services), each stamped
    with the wall-clock time it was due."""
    pushed = Pushed()
    total = pushed.count = int(rate * seconds)
    start = time.perf_counter() + 0.01
    wall = time.time() - time.perf_counter()  # perf_counter -> wall clock
    taken = 0

    async def sender(conn: Connection) -> None:
        nonlocal taken
        while taken < total:
            i, taken = taken, taken + 1
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            service = f"svc-{(start_index + i) % SERVICES}"
            n = next(_numbers)
            status = await conn.send(_push(service, wall + due, n))
            pushed.answered[n] = time.time()
            pushed.waited.append(time.perf_counter() - due)
            if status != 201:
                raise RuntimeError(f"push answered {status}")

    await asyncio.gather(*(sender(c) for c in conns))
    return pushed


class Clients:
    """The subscriber process, driven line by line."""

    #: every subscriber process started, so a failed run leaves none behind
    started: list[asyncio.subprocess.Process] = []

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.started.append(proc)

    @classmethod
    async def start(cls, port: int, n: int) -> Clients:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.stream_fanout", "CLIENTS", str(port), str(n),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=1 << 24,
        )  # fmt: skip
        clients = cls(proc)
        await clients.ask("")  # connected and subscribed
        return clients

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        if command:
            self.proc.stdin.write(command.encode() + b"\n")
            await self.proc.stdin.drain()
        line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the subscriber process died")
        answer: dict[str, Any] = json.loads(line)
        return answer

    async def stop(self) -> None:
        await self.ask("STOP")
        await self.proc.wait()


async def _until_live(clients: Clients, conns: list[Connection], n: int) -> None:
    """Push one sample per service until every subscriber has had one: all are subscribed."""
    for _ in range(100):
        await _write(conns, RATE, SERVICES / RATE, 0)
        if (await clients.ask("READY"))["ready"] >= n:
            await asyncio.sleep(1.0)  # let the last of them arrive
            await clients.ask("COLLECT 0")  # and forget them
            return
    raise RuntimeError("subscribers never got their first event")


async def _rounds(
    server: int, clients: Clients, conns: list[Connection], rounds: int, per_sample: int
) -> tuple[float, float, int]:
    """Medians over rounds of two p99 lags (ms): from each push's due time to each receipt,
    and from each push's answer to its last subscriber's receipt; and deliveries lost."""
    p99s, after_answer, lost = [], [], 0
    for r in range(rounds):
        cpu = {pid: _cpu_seconds(pid) for pid in (server, clients.proc.pid)}
        pushed = await _write(conns, RATE, SECONDS, r)
        report = await clients.ask(f"COLLECT {pushed.count * per_sample}")
        lost += pushed.count * per_sample - report["received"]
        p99s.append(report["p99"] * 1000)
        last = {int(n): t for n, t in report["last"].items()}
        answered = [last[n] - t for n, t in pushed.answered.items() if n in last]
        after_answer.append(percentile(answered, 99) * 1000)
        used = [(_cpu_seconds(pid) - t) / SECONDS for pid, t in cpu.items()]
        print(
            f"# stream_fanout: {report['received']} deliveries, lag p50"
            f" {report['p50'] * 1000:.1f} ms, p99 {p99s[-1]:.1f} ms; pushes answered p99"
            f" {percentile(pushed.waited, 99) * 1000:.1f} ms after due; answer to last receipt"
            f" p99 {after_answer[-1]:.1f} ms; cores used: server {used[0]:.2f}, subscribers"
            f" {used[1]:.2f}; load average {os.getloadavg()[0]:.1f}",
            file=sys.stderr,
        )
    return statistics.median(p99s), statistics.median(after_answer), lost


async def _settled_rss(pid: int) -> int:
    """RSS once it stops moving (the minimum of a few readings a second apart)."""
    readings = []
    for _ in range(3):
        await asyncio.sleep(1.0)
        readings.append(_rss_bytes(pid))
    return min(readings)


async def run(rounds: int) -> list[Figure]:
    """Baseline (one subscriber) first, then the 1,000; medians of the rounds' p99s."""
    async with scratch_database() as dsn:
        port = _free_port()
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.stream_fanout", "SERVE", dsn, str(port)
        )
        try:
            conns = await _connect(port)
            ready = b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            for _ in range(300):  # the pool connects in the background: wait for /readyz
                if await conns[0].send(ready) == 200:
                    break
                await asyncio.sleep(0.1)
            await _write(conns, RATE, 2.0, 0)  # warm up (series created, statements prepared)

            one = await Clients.start(port, 1)
            await _until_live(one, conns, 1)
            base_p99, base_after, base_lost = await _rounds(server.pid, one, conns, rounds, 1)
            await one.stop()

            before = await _settled_rss(server.pid)
            many = await Clients.start(port, SUBSCRIBERS)
            await _until_live(many, conns, SUBSCRIBERS)
            idle = await _settled_rss(server.pid)
            per_subscriber = (idle - before) / SUBSCRIBERS / 1024
            p99, after, lost = await _rounds(
                server.pid, many, conns, rounds, SUBSCRIBERS // SERVICES
            )
            await many.stop()
        finally:
            for proc in [*Clients.started, server]:
                if proc.returncode is None:
                    proc.terminate()
                    await proc.wait()
    if lost or base_lost:
        raise RuntimeError(f"deliveries lost: {lost} (1,000 subscribers), {base_lost} (one)")
    return [
        Figure(f"p99 delivery lag, {SUBSCRIBERS:,} subscribers, {RATE:,.0f} pushes/s", p99, "ms",
               target="< 250 ms", baseline=base_p99,
               baseline_name="one subscriber following every service", met=p99 < 250),
        Figure("p99 from a push's answer to its last subscriber", after, "ms",
               target="< 250 ms", baseline=base_after,
               baseline_name="one subscriber following every service", met=after < 250),
        Figure("server memory per idle subscriber", per_subscriber, "KiB",
               target="< 50 KB", met=per_subscriber * 1024 < 50_000),
    ]  # fmt: skip


async def _connect(port: int) -> list[Connection]:
    for _ in range(200):
        try:
            return [await Connection.open(port) for _ in range(WRITERS)]
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the server never listened")


# ----------------------------------------------------------------------------- child processes


def _serve(dsn: str, port: int) -> None:
    """The real app, listening on ``port``."""
    from bench.harness import run_like_the_service
    from exporter.config import parse_config
    from exporter.web.app import create_app

    _raise_fd_limit()
    tokens = [
        {"name": "read", "token": READ_TOKEN, "scopes": ["read"]},
        {"name": "write", "token": WRITE_TOKEN, "scopes": ["write"]},
    ]
    config = parse_config({"auth": {"tokens": tokens}, "host": {"enabled": False}})
    run_like_the_service(create_app(config, dsn=dsn), port)


async def _clients(port: int, n: int) -> None:
    """Hold ``n`` subscribers; answer the driver's commands on stdin, one JSON line each."""
    import aiohttp
    import msgspec

    _raise_fd_limit()
    lags: list[float] = []
    got = [0] * n
    last: dict[int, float] = {}  # push number -> when its last subscriber got it
    # COLLECT waits for this many deliveries
    wanted = [float("inf")]
    enough = asyncio.Event()
    decode = msgspec.json.decode
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    url = f"http://127.0.0.1:{port}/api/v1/stream"
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}

    async def subscriber(k: int) -> None:
        ws = await session.ws_connect(url, headers=headers, max_msg_size=0)
        sub: dict[str, Any] = {"type": "subscribe", "channels": ["health_metrics"]}
        if n > 1:
            sub["filter"] = {"service": f"svc-{k % SERVICES}"}
        await ws.send_json(sub)
        sockets.append(ws)
        async for msg in ws:
            event = decode(msg.data)
            if event.get("type") == "event":
                now = time.time()
                metadata = event["data"]["metadata"]
                lags.append(now - metadata["sent"])
                last[metadata["n"]] = now
                got[k] += 1
                if len(lags) >= wanted[0]:
                    enough.set()

    sockets: list[aiohttp.ClientWebSocketResponse] = []
    tasks = [asyncio.create_task(subscriber(k)) for k in range(n)]
    while len(sockets) < n:
        await asyncio.sleep(0.05)
        for t in tasks:
            if t.done() and t.exception() is not None:
                raise RuntimeError("a subscriber failed") from t.exception()

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def say(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    say({"connected": n})
    while line := (await reader.readline()).decode().strip():
        command, _, arg = line.partition(" ")
        if command == "READY":
            say({"ready": sum(1 for g in got if g)})
        elif command == "COLLECT":
            wanted[0] = int(arg)
            if len(lags) >= wanted[0]:
                enough.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(enough.wait(), DRAIN_SECONDS)
            say({"received": len(lags), "p50": percentile(lags, 50),
                 "p99": percentile(lags, 99), "last": last})  # fmt: skip
            lags.clear()
            last.clear()
            enough.clear()
            wanted[0] = float("inf")
        elif command == "STOP":
            for ws in sockets:
                await ws.close()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await session.close()
            say({"stopped": n})
            return


if __name__ == "__main__" and sys.argv[1:2] == ["SERVE"]:
    _serve(sys.argv[2], int(sys.argv[3]))
elif __name__ == "__main__" and sys.argv[1:2] == ["CLIENTS"]:
    from exporter.service import new_event_loop

    asyncio.set_event_loop(new_event_loop())
    asyncio.get_event_loop().run_until_complete(_clients(int(sys.argv[2]), int(sys.argv[3])))
    os._exit(0)
