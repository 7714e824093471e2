"""The application factory: the features (state, lifetimes), then middlewares and routes."""

from __future__ import annotations

import time

from aiohttp import web

from exporter import demo
from exporter.config import Config
from exporter.features import alertmanager as alertmanager_feature
from exporter.features import alerts as alerts_feature
from exporter.features import core, overview
from exporter.features import health as health_feature
from exporter.features import heartbeats as heartbeats_feature
from exporter.features import maintenance as maintenance_feature
from exporter.features import performance_logs as logs_feature
from exporter.features import quality as quality_feature
from exporter.features import stream as stream_feature
from exporter.features import tickets as tickets_feature
from exporter.features.core import SELF_METRICS
from exporter.web import (
    alertmanager,
    alerts,
    auth,
    dashboards,
    events,
    health,
    heartbeats,
    maintenance,
    metrics,
    otlp,
    page,
    performance_logs,
    probes,
    quality,
    selftest,
    sessions,
    stream,
    tickets,
)
from exporter.web.api import API, Api
from exporter.web.errors import Handler, error_middleware
from exporter.web.origins import cors_headers, origin_middleware
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


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of every /api/v1 route."""
    return json_response(request.app[API].openapi())


def create_app(config: Config, *, dsn: str, replica: str | None = None) -> web.Application:
    """Build the service for ``config`` storing into the database at ``dsn``."""
    limit = max(
        config.web.max_body_bytes,
        config.web.alertmanager_max_body_bytes,
        config.web.performance_logs_max_body_bytes,
    )
    app = web.Application(
        middlewares=[
            request_metrics_middleware,
            origin_middleware,
            error_middleware,
            auth.auth_middleware,
        ],
        client_max_size=limit,
        # bodies are inflated by payload.read_body, which bounds the inflated size itself
        handler_args={"max_field_size": 16384, "auto_decompress": False},
    )
    app.on_response_prepare.append(cors_headers)
    # the application layer: each feature's state, views, scheduled work and lifetimes
    core.setup(app, config, dsn, replica or core.replica_name(config, None))
    for feature in (
        health_feature,
        alertmanager_feature,
        heartbeats_feature,
        maintenance_feature,
        alerts_feature,
        quality_feature,
        logs_feature,
        stream_feature,
        tickets_feature,
        overview,
    ):
        feature.setup(app)
    if config.demo:
        demo.setup(app)
    # the HTTP surface: routes only
    app[API] = Api()
    auth.setup(app, config)
    probes.setup(app)
    metrics.setup(app)
    app.router.add_get("/api/v1/openapi.json", openapi)
    for routes in (
        health,
        alertmanager,
        alerts,
        maintenance,
        heartbeats,
        performance_logs,
        otlp,
        quality,
        stream,
        events,
        tickets,
        selftest,
        sessions,
        dashboards,
        page,
    ):
        routes.setup(app)
    return app
