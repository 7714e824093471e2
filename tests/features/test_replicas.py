"""Three replicas (separate ``serve`` processes) on one PostgreSQL: they agree, scheduled work
runs once whoever leads, a leader that dies or loses its session is replaced, and a loop whose
query fails recovers by itself."""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.conftest import eventually
from tests.support.metrics import Samples, samples_by_name
from tests.support.process import ServiceProcess, replica_processes

PROBE_INTERVAL = 2.0
# families every replica derives from PostgreSQL (host, process and self metrics excluded)
DOMAIN = (
    "monitoring_health_metric_value",
    "monitoring_health_status",
    "monitoring_health_threshold",
    "monitoring_service_up",
    "monitoring_data_quality_score",
    "monitoring_data_quality_status",
    "monitoring_alerts",
    "monitoring_overall_status",
    "monitoring_operation_duration_seconds_bucket",
    "monitoring_operation_duration_seconds_count",
    "monitoring_operation_duration_seconds_sum",
    "monitoring_quality_check_success",
    "monitoring_maintenance",
    "monitoring_heartbeat_last_seen_timestamp_seconds",
)


class Replicas:
    """The running replicas and an HTTP session to talk to them."""

    def __init__(self, processes: list[ServiceProcess], session: aiohttp.ClientSession) -> None:
        self.processes = processes
        self.session = session

    def alive(self) -> list[ServiceProcess]:
        return [p for p in self.processes if p.proc.poll() is None]

    async def get(self, replica: ServiceProcess, path: str) -> Any:
        async with self.session.get(replica.url + path) as resp:
            if resp.content_type == "application/json":
                return await resp.json()
            return await resp.text()

    async def post(self, replica: ServiceProcess, path: str, body: Any) -> int:
        async with self.session.post(replica.url + path, json=body) as resp:
            await resp.read()
            return resp.status

    async def metrics(self, replica: ServiceProcess) -> Samples:
        return samples_by_name(await self.get(replica, "/metrics"))

    async def domain(self, replica: ServiceProcess) -> dict[str, dict[tuple[str, ...], float]]:
        # (host figures are off here: every health series is shared)
        samples = await self.metrics(replica)
        return {name: samples.get(name, {}) for name in DOMAIN}

    async def leaders(self) -> list[ServiceProcess]:
        found = []
        for p in self.alive():
            try:
                if (await self.metrics(p)).get("monitoring_leader", {}).get(()) == 1.0:
                    found.append(p)
            except aiohttp.ClientError:
                continue
        return found


@pytest.fixture
async def target() -> AsyncIterator[int]:
    """A TCP port the replicas probe."""

    async def accept(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def replicas(tmp_path: Path, database_url: str, target: int) -> AsyncIterator[Replicas]:
    config = {
        "auth": {"disabled": True},
        "host": {"enabled": False},
        "metrics": {"resync_interval": "5s"},
        "heartbeats": [{"name": "nightly", "interval": "1h"}],
        "services": [
            {
                "name": "target",
                "interval": f"{PROBE_INTERVAL}s",
                "timeout": "1s",
                "tcp": {"address": f"127.0.0.1:{target}"},
            }
        ],
        "quality": {
            "sources": {"self": {"dsn": database_url}},
            "checks": [
                {
                    "name": "lease_holder",
                    "source": "self",
                    "dataset": "leases",
                    "dimension": "completeness",
                    "table": "monitoring.leases",
                    "columns": ["name"],
                    "interval": f"{PROBE_INTERVAL}s",
                }
            ],
        },
    }
    with replica_processes(tmp_path, config, database_url) as processes:
        await asyncio.gather(*(p.wait_ready() for p in processes))
        async with aiohttp.ClientSession() as session:
            yield Replicas(processes, session)


async def identical(replicas: Replicas, what: Callable[[ServiceProcess], Awaitable[Any]]) -> bool:
    views = [await what(p) for p in replicas.alive()]
    return all(v == views[0] for v in views[1:])


def overview_of(replicas: Replicas) -> Callable[[ServiceProcess], Awaitable[Any]]:
    async def get(p: ServiceProcess) -> Any:
        body = await replicas.get(p, "/api/v1/overview")
        body.pop("generated_at")
        return body

    return get


async def test_replicas_agree_within_two_seconds_of_writes_spread_over_them(
    replicas: Replicas, db: asyncpg.Connection
) -> None:
    nodes = itertools.cycle(replicas.processes)
    for i in range(12):
        body = {"service": f"svc{i % 4}", "metric_type": "latency", "value": i, "unit": "ms",
                "thresholds": {"warning": 5, "critical": 9}}  # fmt: skip
        assert await replicas.post(next(nodes), "/api/v1/health-metrics", body) == 201
    for i in range(6):
        alert = {"status": "firing", "labels": {"alertname": f"A{i}", "severity": "critical"},
                 "startsAt": "2026-01-01T00:00:00Z", "fingerprint": f"fp{i}"}  # fmt: skip
        webhook = {"version": "4", "status": "firing", "alerts": [alert]}
        assert await replicas.post(next(nodes), "/api/v1/alertmanager", webhook) == 200
    for i in range(6):
        indicator = {"source": "shop", "dataset": f"d{i % 2}", "dimension": "accuracy",
                     "score": 90 + i}  # fmt: skip
        assert await replicas.post(next(nodes), "/api/v1/quality-indicators", indicator) == 201
    logs = [{"operation_type": "api_call", "duration_ms": 10 * i, "status": "success"}
            for i in range(30)]  # fmt: skip
    assert await replicas.post(next(nodes), "/api/v1/performance-logs", logs) == 200
    window = {"matchers": {"service": "svc1"}, "ends_at": "2100-01-01T00:00:00Z",
              "starts_at": "2099-12-31T00:00:00Z"}  # fmt: skip
    assert await replicas.post(next(nodes), "/api/v1/maintenance", window) == 201
    # every day, all day: in force whenever the test runs
    window = {"matchers": {"service": "svc2"}, "starts_at": "2020-01-01T00:00:00Z",
              "ends_at": "2020-01-02T00:00:00Z", "recurrence": "daily"}  # fmt: skip
    assert await replicas.post(next(nodes), "/api/v1/maintenance", window) == 201
    assert await replicas.post(next(nodes), "/api/v1/heartbeats/nightly", None) == 200
    written = time.monotonic()

    async def all_there() -> bool:
        for p in replicas.processes:
            m = await replicas.domain(p)
            if (
                m["monitoring_health_metric_value"].get(("latency", "svc3")) != 0.011
                or m["monitoring_alerts"].get(("critical", "active")) != 6  # severity, status
                or m["monitoring_data_quality_score"].get(("d1", "accuracy", "shop")) != 95
                or m["monitoring_operation_duration_seconds_count"].get(("api_call", "success"))
                != 30
                or m["monitoring_maintenance"] != {("svc2",): 1.0}
                or not m["monitoring_heartbeat_last_seen_timestamp_seconds"].get(("nightly",))
            ):
                return False
        return await identical(replicas, replicas.domain) and await identical(
            replicas, overview_of(replicas)
        )

    await eventually(all_there, timeout=2.0, interval=0.05)
    assert time.monotonic() - written < 2.5


async def test_hysteresis_counts_samples_whichever_replica_received_them(
    replicas: Replicas,
) -> None:
    rule = {"critical": 5, "for": 3}
    healthy = {"service": "flappy", "metric_type": "errors", "value": 1, "thresholds": rule}
    failing = {**healthy, "value": 10}
    assert await replicas.post(replicas.processes[0], "/api/v1/health-metrics", healthy) == 201

    async def status_everywhere(expected: float) -> bool:
        for p in replicas.processes:
            # a replica that has not yet seen the first push has no family at all
            status = (await replicas.metrics(p)).get("monitoring_health_status", {})
            if status.get(("errors", "flappy")) != expected:
                return False
        return True

    # three failing samples, each to another replica: critical after the third only
    for i, replica in enumerate(replicas.processes):
        assert await replicas.post(replica, "/api/v1/health-metrics", failing) == 201
        if i < 2:
            await eventually(lambda: status_everywhere(0.0), timeout=2.0)
    await eventually(lambda: status_everywhere(2.0), timeout=2.0)
    rows = [r["status"] for r in await _rows(replicas, "flappy")]
    assert rows == ["healthy", "healthy", "healthy", "critical"]


async def _rows(replicas: Replicas, service: str) -> list[Any]:
    page = await replicas.get(
        replicas.processes[0], f"/api/v1/health-metrics?service={service}&limit=10"
    )
    return list(reversed(page["items"]))


async def test_scheduled_work_runs_once_across_replicas_and_fails_over(
    replicas: Replicas, db: asyncpg.Connection
) -> None:
    async def one_leader() -> bool:
        return len(await replicas.leaders()) == 1

    await eventually(one_leader, timeout=10)
    started = await db.fetchval("SELECT now()")
    await asyncio.sleep(10 * PROBE_INTERVAL + 0.5)
    probes = await db.fetchval(
        "SELECT count(*) FROM monitoring.system_health_metrics WHERE service_name = 'target'"
        " AND metric_type = 'up' AND recorded_at >= $1",
        started,
    )
    checks = await db.fetchval(
        "SELECT count(*) FROM monitoring.data_quality_indicators"
        " WHERE check_name = 'lease_holder' AND created_at >= $1",
        started,
    )
    # 10 intervals: 10 runs (± 1 at the edges of the window), not 10 per replica
    assert 9 <= probes <= 11, probes
    assert 9 <= checks <= 11, checks

    # the leader dies without a word
    (leader,) = await replicas.leaders()
    epoch = await db.fetchval("SELECT epoch FROM monitoring.leases")
    killed_at = time.monotonic()
    leader.proc.send_signal(signal.SIGKILL)
    leader.proc.wait()

    async def taken_over() -> bool:
        return len(await replicas.leaders()) == 1

    await eventually(taken_over, timeout=15)
    assert time.monotonic() - killed_at < 15
    assert await db.fetchval("SELECT epoch FROM monitoring.leases") > epoch
    await asyncio.sleep(3 * PROBE_INTERVAL)
    times = [
        r["recorded_at"]
        for r in await db.fetch(
            "SELECT recorded_at FROM monitoring.system_health_metrics WHERE service_name ="
            " 'target' AND metric_type = 'up' ORDER BY recorded_at"
        )
    ]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert min(gaps) > PROBE_INTERVAL * 0.5, gaps  # never twice in one interval
    assert max(gaps) < PROBE_INTERVAL * 2 + 2.0, gaps  # at most one interval skipped (+ slack)

    # the new leader's lease session is terminated while its process lives on
    (second,) = await replicas.leaders()
    epoch = int(await db.fetchval("SELECT epoch FROM monitoring.leases"))
    await db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = 'monitoring-exporter-lease' AND datname = current_database()"
        " AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted)"
    )

    async def new_term() -> bool:
        return int(await db.fetchval("SELECT epoch FROM monitoring.leases")) > epoch

    await eventually(new_term, timeout=15)
    assert "no longer leads" in second.log()
    await asyncio.sleep(2 * PROBE_INTERVAL + 1)
    current = await db.fetchval("SELECT epoch FROM monitoring.leases")
    # the frequent jobs' last runs are of the current term: the deposed one wrote nothing after
    assert (
        await db.fetchval(
            "SELECT count(*) FROM monitoring.scheduled_runs WHERE epoch <> $1"
            " AND job IN ('probe:target', 'quality:lease_holder')",
            current,
        )
        == 0
    )


async def test_a_loop_whose_query_fails_recovers_by_itself(
    replicas: Replicas, db: asyncpg.Connection
) -> None:
    replica = replicas.processes[0]
    # the table every replica's view of the scheduled runs reads (and the leader writes)
    await db.execute("ALTER TABLE monitoring.scheduled_runs RENAME TO runs_away")
    try:

        async def failing() -> bool:
            ready = await replicas.get(replica, "/readyz?verbose")
            return bool(ready["tasks"]["views"]["consecutive_failures"])

        await eventually(failing, timeout=10)
        failures = (await replicas.metrics(replica))["monitoring_background_task_failures_total"]
        assert failures[("views",)] >= 1
        ready = await replicas.get(replica, "/readyz?verbose")
        assert "scheduled_runs" in ready["tasks"]["views"]["last_error"]
        await asyncio.sleep(8)
    finally:
        await db.execute("ALTER TABLE monitoring.runs_away RENAME TO scheduled_runs")

    async def recovered() -> bool:
        ready = await replicas.get(replica, "/readyz?verbose")
        runs = (await replicas.metrics(replica)).get("monitoring_quality_check_success", {})
        return (
            ready["tasks"]["views"]["consecutive_failures"] == 0
            and runs.get(("lease_holder",)) == 1.0
        )

    await eventually(recovered, timeout=35)
    # and the failed loop's replica agrees with the others again
    await eventually(lambda: identical(replicas, replicas.domain), timeout=5.0)
