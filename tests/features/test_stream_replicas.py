"""The change feed's promise under load: 8 writers across 3 replicas (separate processes on one
database), the listener connections killed every few seconds, a client too slow on purpose,
and subscribers that leave and resume on another replica. Every subscriber ends with exactly
the committed changes, in cursor order, with no duplicate and no gap."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import random
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.conftest import eventually
from tests.support.process import ServiceProcess, replica_processes

#: how long the writers write (the issue asks for 60 s)
DURATION = 60.0
#: seconds between two rounds of killing every listener connection
KILL_EVERY = 5.0
QUEUE_SIZE = 300
CHANNELS = ["health_metrics", "system_alerts", "data_quality", "status_changes"]


def order(cursor: str) -> tuple[int, int]:
    xid, _, row = cursor.partition("-")
    return (int(xid), int(row))


@pytest.fixture
def replicas(tmp_path: Path, writer_url: str) -> Iterator[list[ServiceProcess]]:
    """Three replicas (stopped by a plain finalizer, whatever state the test's loop is in)."""
    config = {
        "auth": {"disabled": True},
        "host": {"enabled": False},
        # a few connections each: the PostgreSQL of the suite is shared
        "database": {"min_connections": 1, "max_connections": 4},
        # (the slow client stops reading altogether: without pongs a heartbeat would cut it
        # off with 1006 before its queue fills)
        "web": {"stream_queue_size": QUEUE_SIZE, "stream_heartbeat": "5m"},
    }
    with replica_processes(tmp_path, config, writer_url) as processes:
        yield processes


class Received:
    """What one subscriber got, and how its connections ended."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.cursors: list[tuple[int, int]] = []
        self.closes: list[int] = []
        self.resets = 0
        self.replicas: list[int] = []  # the replica of every connection, in turn

    @property
    def last(self) -> str:
        if not self.cursors:
            return "0-0"
        return f"{self.cursors[-1][0]}-{self.cursors[-1][1]}"

    def add(self, event: dict[str, Any]) -> None:
        if event["type"] == "reset":
            self.resets += 1
            return
        assert event["type"] == "event", event
        self.cursors.append(order(event["cursor"]))


async def follow(
    session: aiohttp.ClientSession,
    replicas: list[ServiceProcess],
    got: Received,
    stop: asyncio.Event,
    hop: bool,
    seed: int,
) -> None:
    """Subscribe to every channel from the start; a hopping subscriber leaves every few
    seconds and resumes from its last cursor on the next replica."""
    rng = random.Random(seed)
    for n in itertools.count(seed):
        replica = replicas[n % len(replicas)]
        got.replicas.append(n % len(replicas))
        async with session.ws_connect(replica.url + "/api/v1/stream") as ws:
            after = {"health_metrics": got.last}
            await ws.send_json({"type": "subscribe", "channels": CHANNELS, "after": after})
            stay = rng.uniform(2, 8) if hop else None
            left = asyncio.Event()
            leaving = asyncio.create_task(leave(ws, stay, stop, left))
            try:
                async for msg in ws:
                    assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), msg
                    got.add(msg.json())
                if not left.is_set():
                    got.closes.append(ws.close_code or 0)
                    assert ws.close_code in (1011, 1013), ws.close_code  # resume after either
            finally:
                leaving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await leaving
        if stop.is_set():
            return


async def leave(
    ws: aiohttp.ClientWebSocketResponse,
    after: float | None,
    stop: asyncio.Event,
    left: asyncio.Event,
) -> None:
    """Close the connection after ``after`` seconds (never: None), or when told to stop."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), after)
    left.set()
    await ws.close()


async def slow_client(replica: ServiceProcess, got: Received, stall: float) -> None:
    """A client that stops reading (a tiny receive buffer, nothing read for ``stall``
    seconds): the replica must close it with 1013 rather than slow the others; it then reads
    what was on the wire, and resumes with its last cursor (the caller does)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", replica.port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):  # a byte at a time: not one byte of events more
        head += await loop.sock_recv(sock, 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    subscribe = {"type": "subscribe", "channels": CHANNELS, "after": {"health_metrics": "0-0"}}
    body = json.dumps(subscribe).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(body))
    assert 126 <= len(body) < 65536
    frame = bytes([0x81, 0x80 | 126]) + struct.pack("!H", len(body)) + mask + masked
    await loop.sock_sendall(sock, frame)
    # nothing reads the socket meanwhile (a stream would buffer whatever arrives)
    await asyncio.sleep(stall)
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        async with asyncio.timeout(30):
            await read_frames(reader, got)
    except TimeoutError as exc:
        raise AssertionError(f"not closed: {len(got.cursors)} events read") from exc
    except asyncio.IncompleteReadError as exc:
        raise AssertionError(f"no close frame after {len(got.cursors)} events") from exc
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def read_frames(reader: asyncio.StreamReader, got: Received) -> None:
    """Read server frames (unmasked) until the close frame; keep its code."""
    while True:
        first, second = await reader.readexactly(2)
        size = second & 0x7F
        if size == 126:
            (size,) = struct.unpack("!H", await reader.readexactly(2))
        elif size == 127:
            (size,) = struct.unpack("!Q", await reader.readexactly(8))
        payload = await reader.readexactly(size)
        opcode = first & 0x0F
        if opcode == 0x8:
            got.closes.append(struct.unpack("!H", payload[:2])[0])
            return
        if opcode in (0x1, 0x2):
            got.add(json.loads(payload))


async def write(
    session: aiohttp.ClientSession,
    replicas: list[ServiceProcess],
    kind: str,
    n: int,
    stop: asyncio.Event,
    open_alerts: list[int],
) -> int:
    """One writer: post its kind of write to the replicas in turn until told to stop."""
    rng = random.Random(n)
    done = 0
    for i in itertools.count():
        if stop.is_set():
            return done
        replica = replicas[(i + n) % len(replicas)]
        if kind == "health":
            body: Any = {
                "service": f"svc{n}",
                "metric_type": "latency",
                "value": rng.choice([100, 700, 1500]),
                "unit": "ms",
                "thresholds": {"warning": 500, "critical": 1000},
            }
            path = "/api/v1/health-metrics"
        elif kind == "quality":
            body = {"source": f"src{n}", "dataset": "d", "dimension": "accuracy",
                    "score": rng.choice([100, 97, 80])}  # fmt: skip
            path = "/api/v1/quality-indicators"
        elif kind == "webhook":
            status = "resolved" if i % 3 == 2 else "firing"
            alert = {
                "status": status,
                "labels": {"alertname": f"A{n}-{i // 3}", "severity": "high", "service": "db"},
                "startsAt": "2026-11-27T10:00:00Z",
                "fingerprint": f"w{n}-{i // 3}",
            }
            body = {"version": "4", "status": status, "receiver": "x", "alerts": [alert]}
            path = "/api/v1/alertmanager"
        else:
            if not open_alerts:
                await asyncio.sleep(0.05)
                continue
            alert_id = open_alerts.pop(rng.randrange(len(open_alerts)))
            body = {"by": f"ack{n}"}
            path = f"/api/v1/alerts/{alert_id}/acknowledge"
        async with session.post(replica.url + path, json=body) as resp:
            await resp.read()
            # (503: the shared PostgreSQL had no connection to spare; nothing was stored)
            assert resp.status in (200, 201, 404, 409, 503), (path, resp.status)
            done += resp.status in (200, 201)
        if kind == "webhook" and i % 3 == 0:
            async with session.get(replica.url + "/api/v1/alerts?status=active&limit=5") as resp:
                open_alerts.extend(a["id"] for a in (await resp.json())["items"])
        await asyncio.sleep(0.01)
    return done


async def kill_listeners(db: asyncpg.Connection, stop: asyncio.Event) -> int:
    killed = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), KILL_EVERY)
        killed += await db.fetchval(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'monitoring-exporter-listener'"
            " AND datname = current_database()) AS k"
        )
    return killed


@pytest.mark.timeout(DURATION + 180)
async def test_every_subscriber_gets_exactly_the_committed_changes_in_order(
    replicas: list[ServiceProcess], db: asyncpg.Connection
) -> None:
    await asyncio.gather(*(p.wait_ready() for p in replicas))
    stop = asyncio.Event()
    readers_stop = asyncio.Event()
    open_alerts: list[int] = []
    subscribers = [Received(f"s{i}") for i in range(5)]
    slow = Received("slow")
    tasks: list[asyncio.Task[Any]] = []
    async with aiohttp.ClientSession() as session:
        try:
            # two stay on one replica, three hop between replicas
            following = [
                asyncio.create_task(follow(session, replicas, got, readers_stop, i >= 2, i))
                for i, got in enumerate(subscribers)
            ]
            stalled = asyncio.create_task(slow_client(replicas[0], slow, DURATION * 0.8))
            writers = [
                asyncio.create_task(write(session, replicas, kind, n, stop, open_alerts))
                for n, kind in enumerate(
                    ["health", "health", "quality", "quality", "webhook", "webhook", "ack", "ack"]
                )
            ]
            killer = asyncio.create_task(kill_listeners(db, stop))
            tasks += [*following, stalled, *writers, killer]
            await asyncio.sleep(DURATION)
            stop.set()
            writes = await asyncio.gather(*writers)
            killed = await killer
            # the slow client was closed with 1013; it resumes with its last cursor
            await stalled
            assert slow.closes == [1013]
            resumed = asyncio.create_task(follow(session, replicas, slow, readers_stop, True, 7))
            tasks.append(resumed)

            # everything committed, once every transaction that wrote it has finished
            async def released() -> list[tuple[int, int]]:
                rows = await db.fetch(
                    "SELECT xid::text AS xid, id, xid < pg_snapshot_xmin(pg_current_snapshot()) AS r"
                    " FROM monitoring.change_log ORDER BY xid, id"
                )
                if not all(r["r"] for r in rows):
                    await asyncio.sleep(0.1)
                    return await released()
                return [(int(r["xid"]), r["id"]) for r in rows]

            committed = await released()
            last = committed[-1]

            async def caught_up() -> bool:
                return all(g.cursors and g.cursors[-1] >= last for g in [*subscribers, slow])

            # (the comparison below says who is missing what)
            with contextlib.suppress(AssertionError):
                await eventually(caught_up, timeout=60, interval=0.1)
            readers_stop.set()
            await asyncio.gather(*following, resumed)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    assert killed >= 3 * (DURATION // KILL_EVERY - 1)
    assert all(w > 20 for w in writes), writes
    assert len(committed) > 1000
    # the hopping subscribers resumed on other replicas, several times each
    assert all(len(set(got.replicas)) == 3 for got in subscribers[2:]), [
        got.replicas for got in subscribers
    ]
    for got in [*subscribers, slow]:
        mine = [c for c in got.cursors if c <= last]
        assert len(mine) == len(set(mine)), f"{got.name}: duplicates"
        assert mine == sorted(mine), f"{got.name}: out of order"
        assert mine == committed, (got.name, len(mine), len(committed), got.closes)
        assert got.resets == 0
    # ... and the log is what the tables hold: every sample, measurement and alert event once
    for table, channel, key in [
        ("system_health_metrics", "health_metrics", "data->>'id'"),
        ("data_quality_indicators", "data_quality", "data->>'id'"),
        ("system_alert_events", "system_alerts", "data->'event'->>'id'"),
    ]:
        assert await db.fetchval(
            f"SELECT array_agg(id ORDER BY id) FROM monitoring.{table}"
        ) == await db.fetchval(
            f"SELECT array_agg(({key})::bigint ORDER BY ({key})::bigint)"
            f" FROM monitoring.change_log WHERE channel = '{channel}'"
        ), table
