"""What every feature shares, on typed app keys: configuration, the database and its listener,
the supervisor of background work, the leader election, the replica's views, the metrics.

``setup`` installs them with their lifetimes. The order of ``cleanup_ctx`` matters: lifetimes
end in reverse, so the pool (first in) closes last, after every feature's writer drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from exporter.config import Config
from exporter.exposition.registry import Exposition
from exporter.exposition.self_metrics import SelfMetrics
from exporter.features.leader import Leadership
from exporter.features.tasks import Supervisor
from exporter.features.views import Views
from exporter.storage import Database, Listener


@dataclass
class Lifecycle:
    """Where the service is in its life: listening yet, or shutting down."""

    #: set by whoever starts the listener (the service, the test server) once it listens
    serving: asyncio.Event = field(default_factory=asyncio.Event)
    #: readiness answers 503 from then on
    draining: bool = False

    async def wait_serving(self, timeout: float) -> None:
        """Wait until the listener is up, or ``timeout`` seconds for embedders that never say."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.serving.wait()


CONFIG = web.AppKey("config", Config)
DATABASE = web.AppKey("database", Database)
LISTENER = web.AppKey("listener", Listener)
EXPOSITION = web.AppKey("exposition", Exposition)
SELF_METRICS = web.AppKey("self_metrics", SelfMetrics)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
SUPERVISOR = web.AppKey("supervisor", Supervisor)
LEADERSHIP = web.AppKey("leadership", Leadership)
VIEWS = web.AppKey("views", Views)
REPLICA = web.AppKey("replica", str)


def replica_name(config: Config, listen_address: str | None) -> str:
    """This replica's name: MONITORING_REPLICA, else configured, else host name and port
    (unique on one machine; in Kubernetes the host name is the pod's)."""
    named = os.environ.get("MONITORING_REPLICA") or config.web.replica
    if named:
        return named
    port = (listen_address or config.web.listen_address).rpartition(":")[2]
    return f"{socket.gethostname()}:{port}"


class StorageCollector:
    """The state of the database pool and the listener."""

    def __init__(self, db: Database, listener: Listener) -> None:
        self.db = db
        self.listener = listener

    def collect(self) -> Iterator[Metric]:
        """Pool sizes and connection flags, read now."""
        stats = self.db.pool_stats()
        pool = GaugeMetricFamily(
            "monitoring_db_pool_connections",
            "Connections of the database pool by state.",
            labels=["state"],
        )
        pool.add_metric(["idle"], stats["idle"])
        pool.add_metric(["busy"], stats["size"] - stats["idle"])
        pool.add_metric(["max"], stats["max"])
        yield pool
        yield GaugeMetricFamily(
            "monitoring_db_up", "Whether the database is connected and migrated.", self.db.ready
        )
        yield GaugeMetricFamily(
            "monitoring_listener_up",
            "Whether the LISTEN connection is up.",
            self.listener.connected,
        )


def setup(app: web.Application, config: Config, dsn: str, replica: str) -> None:
    """Install the shared state and its lifetimes on a new app."""
    database = config.database
    direct = database.direct_url or dsn
    db = app[DATABASE] = Database(dsn, database, config.retention, direct_dsn=direct)
    listener = app[LISTENER] = Listener(direct, connect_timeout=database.connect_timeout.seconds)
    supervisor = app[SUPERVISOR] = Supervisor()
    app[CONFIG] = config
    app[REPLICA] = replica
    app[LIFECYCLE] = Lifecycle()
    app[VIEWS] = Views(
        db, listener, supervisor, resync_interval=config.metrics.resync_interval.seconds
    )
    app[LEADERSHIP] = Leadership(
        db, direct, replica, supervisor, connect_timeout=database.connect_timeout.seconds
    )
    app[VIEWS].add(app[LEADERSHIP].view())
    exposition = app[EXPOSITION] = Exposition()
    self_metrics = app[SELF_METRICS] = SelfMetrics()
    exposition.add("process", ProcessCollector(registry=None))
    exposition.add("exporter", self_metrics.registry)
    exposition.add("storage", StorageCollector(db, listener))
    exposition.add("tasks", supervisor)
    exposition.add("leader", app[LEADERSHIP])

    app.cleanup_ctx.append(_pool)
    app.cleanup_ctx.append(
        supervisor.service(
            "database-connect", lambda a: a[DATABASE].connect_forever(), until_done=True
        )
    )
    app.cleanup_ctx.append(supervisor.service("listener", lambda a: a[LISTENER].run()))
    app.cleanup_ctx.append(supervisor.service("views", lambda a: a[VIEWS].run(), critical=True))
    app.cleanup_ctx.append(
        supervisor.service(
            "leader",
            lambda a: a[LEADERSHIP].run(),
            wait=_ready_to_lead,
            max_backoff=2.0,
        )
    )


async def _ready_to_lead(app: web.Application) -> None:
    # a probe may target this very service (the demo's does): lead once it listens
    await app[LIFECYCLE].wait_serving(timeout=5)
    await app[DATABASE].wait_ready()


async def _pool(app: web.Application) -> AsyncIterator[None]:
    """Close the pool last; it is opened (with migrations) by the database-connect task, so a
    missing database never stops start-up."""
    yield
    await app[DATABASE].close()
