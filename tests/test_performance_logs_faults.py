"""Faults during a sustained ingest: a database restart and a SIGTERM lose nothing acknowledged.

Each record carries a unique operation_name; afterwards every name that was acknowledged
with a 2xx must be in the table exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from exporter.storage.migrate import migrate
from tests.conftest import MakeClient, eventually
from tests.support.postgres import EmbeddedServer, embedded_data_dir
from tests.support.process import ServiceProcess

URL = "/api/v1/performance-logs"
Post = Callable[[bytes], Awaitable[int]]


class Ingest:
    """Several senders posting NDJSON batches of uniquely named records until stopped."""

    def __init__(self, post: Post, senders: int = 4, per_request: int = 20) -> None:
        self.post = post
        self.acked: list[str] = []
        self.statuses: dict[int, int] = {}
        self._ids = itertools.count()
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._send(w, per_request)) for w in range(senders)]

    async def _send(self, worker: int, per_request: int) -> None:
        while not self._stop.is_set():
            names = [f"w{worker}-{next(self._ids)}" for _ in range(per_request)]
            body = "\n".join(
                json.dumps(
                    {
                        "operation_type": "fault_test",
                        "operation_name": n,
                        "duration_ms": 1,
                        "status": "success",
                    }
                )
                for n in names
            ).encode()
            try:
                status = await self.post(body)
            except (aiohttp.ClientError, OSError):
                status = 0  # connection refused or dropped: not acknowledged
                await asyncio.sleep(0.01)
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if 200 <= status < 300:
                self.acked.extend(names)
            else:
                assert status in (0, 503), status

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def at_least(self, n: int, timeout: float = 30) -> None:
        async def enough() -> bool:
            return len(self.acked) >= n

        await eventually(enough, timeout)


async def assert_exactly_once(url: str, acked: list[str]) -> None:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT operation_name, count(*) AS n FROM monitoring.system_performance_logs"
            " WHERE operation_type = 'fault_test' GROUP BY operation_name"
        )
    finally:
        await conn.close()
    counts = {r["operation_name"]: r["n"] for r in rows}
    missing = [n for n in acked if n not in counts]
    doubled = [n for n in acked if counts.get(n, 0) > 1]
    assert not missing and not doubled, (len(missing), len(doubled))


async def test_database_restart_during_sustained_ingest(
    make_client: MakeClient, tmp_path: Path
) -> None:
    with embedded_data_dir(tmp_path) as data_dir:
        await restart_during_ingest(make_client, EmbeddedServer(data_dir))


async def restart_during_ingest(make_client: MakeClient, server: EmbeddedServer) -> None:
    url = await asyncio.to_thread(server.start)
    try:
        conn = await asyncpg.connect(url)
        await migrate(conn, "monitoring")
        await conn.close()
        client = await make_client(
            {
                "auth": {"disabled": True},
                "database": {"acquire_timeout": "1s", "connect_timeout": "1s"},
            },
            dsn=url,
        )

        async def post(body: bytes) -> int:
            resp = await client.post(
                URL, data=body, headers={"Content-Type": "application/x-ndjson"}
            )
            if resp.status == 503:
                assert resp.headers["Retry-After"]
            return resp.status

        ingest = Ingest(post)
        await ingest.at_least(400)
        await asyncio.to_thread(server.stop)

        async def refused() -> bool:
            return ingest.statuses.get(503, 0) > 0

        await eventually(refused, 30)
        await asyncio.to_thread(server.start)
        await ingest.at_least(len(ingest.acked) + 400, timeout=60)
        await ingest.stop()
        assert ingest.statuses.get(503, 0) > 0
        await assert_exactly_once(url, ingest.acked)
    finally:
        await asyncio.to_thread(server.stop)


async def test_sigterm_during_sustained_ingest(
    database_url: str,
    writer_url: str,
    write_config: Callable[[dict[str, Any]], Path],
    tmp_path: Path,
) -> None:
    config = write_config(
        {"auth": {"disabled": True}, "performance_logs": {"batch_max_delay": "50ms"}}
    )
    service = ServiceProcess(
        ["--config", str(config), "--database-url", writer_url], tmp_path / "service.log"
    )
    try:
        await service.wait_ready()
        async with aiohttp.ClientSession() as session:

            async def post(body: bytes) -> int:
                async with session.post(
                    f"{service.url}{URL}",
                    data=body,
                    headers={"Content-Type": "application/x-ndjson"},
                ) as r:
                    return r.status

            ingest = Ingest(post, senders=8)
            await ingest.at_least(1000)
            code, seconds = await asyncio.to_thread(service.terminate)
            await ingest.stop()
        assert code == 0, service.log()
        assert seconds < 20
        # the senders were still sending when the service went away
        assert ingest.statuses.get(0, 0) + ingest.statuses.get(503, 0) > 0
        await assert_exactly_once(database_url, ingest.acked)
    finally:
        service.close()
