"""Database faults under load: pool backends killed mid-request give 503, never 500.

Writes and reads across the API run concurrently while a killer terminates the service's
pool backends (``pg_terminate_backend``) over and over. Every answer must be a 2xx, or a 503
with ``Retry-After`` (a sender that takes a 500 as final drops data), and every write that
was acknowledged with a 2xx must be in the database.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from exporter.storage import is_outage
from tests.conftest import MakeClient, eventually

CONFIG: dict[str, Any] = {
    "auth": {"tokens": [{"name": "root", "token": "a", "scopes": ["admin"]}]},
    "host": {"enabled": False},
    "database": {"acquire_timeout": "2s", "min_connections": 2, "max_connections": 6},
}
AUTH = {"Authorization": "Bearer a"}
KILL = """
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid()
   AND application_name = 'monitoring-exporter'
"""


class Load:
    """Senders looping over every write and read of the API, keeping what was acknowledged."""

    def __init__(self, client: TestClient[Any, Any], alerts: list[int], senders: int = 6) -> None:
        self.client = client
        self.alerts = alerts
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.problems: list[str] = []
        self.acked: dict[str, set[str]] = {
            k: set() for k in ("health", "quality", "logs", "webhook", "created", "ack")
        }
        self._ids = itertools.count()
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._send(w)) for w in range(senders)]

    async def _call(self, name: str, method: str, url: str, **kwargs: Any) -> int:
        kwargs.setdefault("headers", AUTH)
        try:
            resp = await self.client.request(method, url, **kwargs)
            body = await resp.read()
        except (aiohttp.ClientError, OSError) as exc:
            self.problems.append(f"{name}: {exc!r}")  # the service must always answer
            return 0
        self.statuses[(name, resp.status)] += 1
        if resp.status == 503 and not resp.headers.get("Retry-After"):
            self.problems.append(f"{name}: 503 without Retry-After")
        elif not (200 <= resp.status < 300 or resp.status == 503):
            self.problems.append(f"{name}: {resp.status} {body[:200]!r}")
        return resp.status

    async def _send(self, worker: int) -> None:
        operations: list[Callable[[str], Awaitable[None]]] = [
            self._health,
            self._quality,
            self._logs,
            self._webhook,
            self._create,
            self._ack,
            self._reads,
        ]
        while not self._stop.is_set():
            for operation in operations:
                await operation(f"w{worker}-{next(self._ids)}")

    async def _health(self, uid: str) -> None:
        body = {"service": "faulty", "metric_type": "cpu", "value": 1, "metadata": {"uid": uid}}
        if await self._call("health", "POST", "/api/v1/health-metrics", json=body) == 201:
            self.acked["health"].add(uid)

    async def _quality(self, uid: str) -> None:
        body = [{"source": "faulty", "dataset": "d", "dimension": "accuracy", "score": 99,
                 "issues": [uid, "second"]}]  # fmt: skip
        if await self._call("quality", "POST", "/api/v1/quality-indicators", json=body) == 201:
            self.acked["quality"].add(uid)

    async def _logs(self, uid: str) -> None:
        names = [f"{uid}-{k}" for k in range(5)]
        data = "\n".join(
            json.dumps({"operation_type": "fault", "operation_name": name, "duration_ms": 1,
                        "status": "success"})
            for name in names
        )  # fmt: skip
        headers = {**AUTH, "Content-Type": "application/x-ndjson"}
        resp = await self._call("logs", "POST", "/api/v1/performance-logs", data=data,
                                headers=headers)  # fmt: skip
        if resp == 200:
            self.acked["logs"].update(names)

    async def _webhook(self, uid: str) -> None:
        fingerprints = [f"{uid}-{k}" for k in range(2)]
        alerts = [
            {"status": "firing", "labels": {"alertname": "Fault"},
             "startsAt": "2024-05-01T12:00:00Z", "fingerprint": fingerprint}
            for fingerprint in fingerprints
        ]  # fmt: skip
        body = {"version": "4", "status": "firing", "alerts": alerts}
        if await self._call("webhook", "POST", "/api/v1/alertmanager", json=body) == 200:
            self.acked["webhook"].update(fingerprints)

    async def _create(self, uid: str) -> None:
        body = {"title": uid, "severity": "low", "alert_type": "performance"}
        if await self._call("create", "POST", "/api/v1/alerts", json=body) == 201:
            self.acked["created"].add(uid)

    async def _ack(self, uid: str) -> None:
        alert = random.choice(self.alerts)
        url = f"/api/v1/alerts/{alert}/acknowledge"
        if await self._call("ack", "POST", url, json={"by": "oncall"}) == 200:
            self.acked["ack"].add(str(alert))

    async def _reads(self, uid: str) -> None:
        alert = random.choice(self.alerts)
        for url in (
            "/api/v1/health-metrics?service=faulty&limit=5",
            "/api/v1/alerts?limit=5",
            f"/api/v1/alerts/{alert}",
            "/api/v1/quality-indicators?limit=5",
            "/api/v1/quality/overview",
            "/api/v1/performance-logs?operation_type=fault&limit=5",
            "/api/v1/performance-logs/summary",
            "/api/v1/overview",
            "/api/v1/thresholds",
        ):
            name = url.split("?")[0].replace(f"/{alert}", "/{id}")
            await self._call(f"read {name}", "GET", url)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def count(self, name: str, status: int) -> int:
        return self.statuses[(name, status)]


async def stored(db: asyncpg.Connection) -> dict[str, set[str]]:
    queries = {
        "health": "SELECT metadata->>'uid' FROM monitoring.system_health_metrics",
        "quality": "SELECT issues->>0 FROM monitoring.data_quality_indicators",
        "logs": "SELECT operation_name FROM monitoring.system_performance_logs"
        " WHERE operation_type = 'fault'",
        "webhook": "SELECT fingerprint FROM monitoring.system_alerts WHERE source = 'alertmanager'",
        "created": "SELECT title FROM monitoring.system_alerts WHERE source = 'api'",
        "ack": "SELECT id::text FROM monitoring.system_alerts WHERE status = 'acknowledged'",
    }
    return {k: {r[0] for r in await db.fetch(q)} for k, q in queries.items()}


async def test_killed_pool_backends_under_load_give_503_never_500(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(CONFIG)
    targets = []
    for n in range(8):
        resp = await client.post(
            "/api/v1/alerts",
            json={"title": f"target {n}", "severity": "high", "alert_type": "security"},
            headers=AUTH,
        )
        targets.append((await resp.json())["id"])
    load = Load(client, targets)
    kills = 0
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            kills += await db.fetchval(KILL)
            # irregular gaps, so that kills land in every phase of a request
            await asyncio.sleep(random.uniform(0.02, 0.15))

        # the service recovers on its own: every kind of request succeeds again
        async def recovered() -> bool:
            return (await client.get("/readyz")).status == 200

        await eventually(recovered, 30)
    finally:
        await load.stop()
    assert not load.problems, load.problems[:20]
    assert kills >= 10
    answered = {name for name, status in load.statuses if 200 <= status < 300}
    assert {"health", "quality", "logs", "webhook", "create", "ack"} <= answered, load.statuses
    assert sum(n for (_, status), n in load.statuses.items() if status == 503) > 0, load.statuses
    found = await stored(db)
    for kind, acked in load.acked.items():
        missing = acked - found[kind]
        assert not missing, (kind, len(missing), sorted(missing)[:5])


@pytest.mark.parametrize(
    ("exc", "outage"),
    [
        (asyncpg.exceptions.InternalClientError("cannot switch to state 11"), True),
        (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), True),
        (asyncpg.exceptions.InterfaceError("pool is closing"), True),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), True),
        (asyncpg.exceptions.QueryCanceledError("canceling statement due to timeout"), True),
        (asyncpg.exceptions.DeadlockDetectedError("deadlock detected"), True),
        (asyncpg.exceptions.TooManyConnectionsError("too many clients"), True),
        (ConnectionResetError(), True),
        (TimeoutError(), True),
        # the statement's or the input's fault: a retry fails the same way
        (asyncpg.exceptions._base.DataError("invalid input for query argument $1"), False),
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), False),
        (asyncpg.exceptions.UndefinedTableError("relation does not exist"), False),
        (ValueError("x"), False),
    ],
)
def test_connection_level_failures_are_outages(exc: BaseException, outage: bool) -> None:
    assert is_outage(exc) is outage
