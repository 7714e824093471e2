"""The application factory: state, lifetimes, middlewares and routes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

from aiohttp import web
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from exporter.config import Config
from exporter.exposition.registry import Exposition
from exporter.exposition.self_metrics import SelfMetrics
from exporter.storage import Database, Listener
from exporter.web import (
    alerts,
    auth,
    health,
    metrics,
    performance_logs,
    probes,
    quality,
    selftest,
    stream,
)
from exporter.web.api import Api
from exporter.web.background import background
from exporter.web.errors import Handler, error_middleware
from exporter.web.keys import (
    API,
    CONFIG,
    DATABASE,
    EXPOSITION,
    LIFECYCLE,
    LISTENER,
    SELF_METRICS,
    Lifecycle,
)
from exporter.web.payload import json_response


@web.middleware
async def request_metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count and time every request by route (never by raw path, to bound cardinality)."""
    started = time.perf_counter()
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        request.app[SELF_METRICS].observe_request(
            route, request.method, status, time.perf_counter() - started
        )


class StorageCollector:
    """The state of the database pool and the listener."""

    def __init__(self, app: web.Application) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        """Pool sizes and connection flags, read now."""
        db = self.app[DATABASE]
        stats = db.pool_stats()
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
            "monitoring_db_up", "Whether the database is connected and migrated.", db.ready
        )
        yield GaugeMetricFamily(
            "monitoring_listener_up",
            "Whether the LISTEN connection is up.",
            self.app[LISTENER].connected,
        )


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of every /api/v1 route."""
    return json_response(request.app[API].openapi())


def create_app(config: Config, *, dsn: str) -> web.Application:
    """Build the service for ``config`` storing into the database at ``dsn``."""
    limit = max(
        config.web.max_body_bytes,
        config.web.alertmanager_max_body_bytes,
        config.web.performance_logs_max_body_bytes,
    )
    app = web.Application(
        middlewares=[request_metrics_middleware, error_middleware, auth.auth_middleware],
        client_max_size=limit,
        # bodies are inflated by payload.read_body, which bounds the inflated size itself
        handler_args={"max_field_size": 16384, "auto_decompress": False},
    )
    app[CONFIG] = config
    app[API] = Api()
    app[LIFECYCLE] = Lifecycle()
    app[DATABASE] = Database(dsn, config.database, config.retention)
    app[LISTENER] = Listener(dsn, connect_timeout=config.database.connect_timeout.seconds)
    exposition = app[EXPOSITION] = Exposition()
    self_metrics = app[SELF_METRICS] = SelfMetrics()
    exposition.add("process", ProcessCollector(registry=None))
    exposition.add("exporter", self_metrics.registry)
    exposition.add("storage", StorageCollector(app))

    # lifetimes end in reverse: the connector stops before the pool closes, and every
    # feature's writer (added later) flushes before either
    app.cleanup_ctx.append(_pool_ctx)
    app.cleanup_ctx.append(background("database-connect", lambda a: a[DATABASE].connect_forever()))
    app.cleanup_ctx.append(background("listener", lambda a: a[LISTENER].run()))
    auth.setup(app, config)
    probes.setup(app)
    metrics.setup(app)
    app.router.add_get("/api/v1/openapi.json", openapi)
    for feature in (health, alerts, performance_logs, quality, stream, selftest):
        feature.setup(app)
    return app


async def _pool_ctx(app: web.Application) -> AsyncIterator[None]:
    """Close the pool last; it is opened (with migrations) by the database-connect task, so a
    missing database never stops start-up."""
    yield
    await app[DATABASE].close()
