"""Routes and lifetimes of the health feature: push, history, thresholds, overview, probes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any

import aiohttp
import msgspec
from aiohttp import web
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from exporter.demo.health import demo_history
from exporter.domain.alert import open_by_severity
from exporter.domain.health import (
    STATUS_CODE,
    Rule,
    Status,
    classify,
    first_track,
    verdict,
    worst,
)
from exporter.domain.health_push import (
    HealthMetricIn,
    InvalidSample,
    Levels,
    to_rule,
    to_samples,
)
from exporter.domain.health_records import (
    HealthMetric,
    HealthMetricList,
    Overview,
    PushBody,
    QualitySummary,
    ServiceStatus,
    ThresholdIn,
    ThresholdList,
    ThresholdOut,
    ThresholdPath,
)
from exporter.domain.health_rules import Key, Override, RuleBook, configured_rules
from exporter.domain.health_series import Evaluated, Sample, Series, SeriesLimit, SeriesStore
from exporter.domain.health_uptime import UptimeWindow
from exporter.domain.limits import Text, Timestamp, Version
from exporter.exposition.health import HealthExposition
from exporter.inputs.host import HostReader, run_host
from exporter.inputs.probes import Prober, ProbeResult, run_probes
from exporter.storage import StorageUnavailable
from exporter.storage.alerts import count_alerts
from exporter.storage.health import (
    DEMO_SEEDED,
    SampleWriter,
    insert_samples,
    list_samples,
    to_row,
)
from exporter.storage.thresholds import (
    NoOverride,
    VersionConflict,
    is_removed,
    load_thresholds,
    remove_threshold,
    save_threshold,
    split_name,
)
from exporter.web.api import Route
from exporter.web.background import background
from exporter.web.errors import ApiError, Detail
from exporter.web.keys import API, CONFIG, DATABASE, EXPOSITION, LIFECYCLE, SELF_METRICS
from exporter.web.pagination import MAX_LIMIT, Page, after_cursor, next_cursor
from exporter.web.payload import (
    decode_json,
    json_response,
    media_type,
    parse_path,
    parse_query,
    read_body,
)
from exporter.web.quality_checks import overview_of

log = logging.getLogger(__name__)
TAGS = ("health",)


class HealthMetricQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Filters of ``GET /api/v1/health-metrics``; ``cursor`` is a page's ``next_cursor``."""

    service: Text | None = None
    metric_type: Text | None = None
    status: Status | None = None
    since: Timestamp | None = None
    until: Timestamp | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)] = 100
    cursor: Text | None = None


class ThresholdRemoval(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Query of ``DELETE /api/v1/thresholds/{service}/{metric_type}``."""

    # optimistic concurrency: only remove the stored rule if it is at this version
    expect_version: Version | None = None


_push_decoder: msgspec.json.Decoder[PushBody] = msgspec.json.Decoder(PushBody)


# ---------------------------------------------------------------- the feature's state
@dataclass
class Health:
    """The health feature's state on the app."""

    rules: RuleBook
    store: SeriesStore
    exposition: HealthExposition
    writer: SampleWriter
    uptime: dict[str, UptimeWindow] = field(default_factory=dict)
    overall: Status | None = None


HEALTH = web.AppKey("health", Health)


def _override(row: Any) -> tuple[Key, Override]:
    config = msgspec.json.decode(row["config"])
    if is_removed(config):
        return split_name(row["name"]), Override(None, row["version"], row["updated_at"])
    rule = Rule(
        config.get("warning"),
        config.get("critical"),
        config.get("direction", "above"),
        int(config.get("for", 1)),
    )
    return split_name(row["name"]), Override(rule, row["version"], row["updated_at"])


def _install(health: Health, row: Any) -> Key:
    """Put a stored rule (or its removal) into the rule book; the key it rules."""
    key, override = _override(row)
    health.rules.set_override(key, override)
    return key


def _metric(row: Any) -> HealthMetric:
    data = dict(row)
    data["metadata"] = msgspec.json.decode(data["metadata"])
    return HealthMetric(**data)


# ---------------------------------------------------------------- handlers
async def post_metrics(request: web.Request) -> web.Response:
    """Record one health metric or an array of them; 201 once committed."""
    app = request.app
    media_type(request, ("application/json",))
    rejected = app[SELF_METRICS].writes_rejected
    raw = await read_body(request, app[CONFIG].web.max_body_bytes)
    try:
        body = decode_json(raw, _push_decoder)
    except ApiError:
        rejected.labels("system_health_metrics", "invalid").inc()
        raise
    try:
        samples = to_samples(body)
    except InvalidSample as exc:
        rejected.labels("system_health_metrics", "invalid").inc()
        raise ApiError(
            400, "invalid_body", "the body is not valid", [Detail(exc.path, exc.message)]
        ) from None
    try:
        stored = await app[HEALTH].writer.push(samples)
    except SeriesLimit as exc:
        raise ApiError(400, "series_limit", str(exc)) from None
    items = [_metric(row) for row in stored]
    if isinstance(body, HealthMetricIn):
        return json_response(items[0], status=201)
    return json_response(HealthMetricList(items), status=201)


async def get_metrics(request: web.Request) -> web.Response:
    """A page of stored samples, newest first."""
    query = parse_query(request, HealthMetricQuery)
    after = after_cursor(query.cursor)
    filters = {
        "service": query.service,
        "metric_type": query.metric_type,
        "status": query.status,
        "since": query.since,
        "until": query.until,
    }
    rows = await list_samples(request.app[DATABASE], filters, after, query.limit)
    return json_response(
        Page([_metric(r) for r in rows], next_cursor(rows, query.limit, "recorded_at"))
    )


def _threshold_out(health: Health, key: Key) -> ThresholdOut:
    series = health.store.get(key)
    rule, origin = health.rules.rule_for(key, series.sample.pushed_rule if series else None)
    override = health.rules.active_override(key)
    return ThresholdOut(
        service=key[0],
        metric_type=key[1],
        warning=rule.warning,
        critical=rule.critical,
        direction=rule.direction,
        for_=rule.for_,
        origin=origin,
        version=override.version if override else None,
        updated_at=override.updated_at if override else None,
    )


async def get_thresholds(request: web.Request) -> web.Response:
    """Every rule in force: configured, set through the API, pushed or built in."""
    health = request.app[HEALTH]
    keys = health.rules.keys() | {key for key, s in health.store.items() if not s.rule.empty}
    items = [_threshold_out(health, key) for key in sorted(keys)]
    return json_response(ThresholdList(items))


def _threshold_key(request: web.Request) -> Key:
    path = parse_path(request, ThresholdPath)
    return path.service, path.metric_type


async def put_threshold(request: web.Request) -> web.Response:
    """Store a rule overriding the YAML; effective on the next sample, exported at once."""
    app = request.app
    service, metric_type = _threshold_key(request)
    media_type(request, ("application/json",))
    body = decode_json(await read_body(request, app[CONFIG].web.max_body_bytes), ThresholdIn)
    try:
        levels = Levels(
            warning=body.warning, critical=body.critical, direction=body.direction, for_=body.for_
        )
        rule = to_rule(levels, body.unit)
    except ValueError as exc:
        raise ApiError(
            400, "invalid_body", "the rule is not valid", [Detail("critical", str(exc))]
        ) from None
    config = {
        "warning": rule.warning,
        "critical": rule.critical,
        "direction": rule.direction,
        "for": rule.for_,
    }
    try:
        row = await save_threshold(app[DATABASE], service, metric_type, config, body.expect_version)
    except VersionConflict:
        raise ApiError(409, "conflict", "the rule changed since the expected version") from None
    health = app[HEALTH]
    return json_response(_threshold_out(health, _install(health, row)))


async def delete_threshold(request: web.Request) -> web.Response:
    """Remove a rule set through the API: the YAML's (or the built-in) rule is in force again."""
    app = request.app
    service, metric_type = _threshold_key(request)
    query = parse_query(request, ThresholdRemoval)
    try:
        row = await remove_threshold(app[DATABASE], service, metric_type, query.expect_version)
    except NoOverride:
        raise ApiError(
            404, "not_found", f"no rule for {service}/{metric_type} was set through the API"
        ) from None
    except VersionConflict:
        raise ApiError(409, "conflict", "the rule changed since the expected version") from None
    health = app[HEALTH]
    return json_response(_threshold_out(health, _install(health, row)))


async def get_overview(request: web.Request) -> web.Response:
    """Overall status, status per service, active alerts by severity, data-quality average."""
    overview = await build_overview(request.app)
    return json_response(overview)


async def build_overview(app: web.Application) -> Overview:
    """Combine the in-memory service statuses with the alert and quality tables."""
    health = app[HEALTH]
    alerts = open_by_severity(await count_alerts(app[DATABASE]))
    quality = (await overview_of(app)).overall
    by_service: dict[str, dict[str, Status]] = {}
    for (service, metric_type), series in health.store.items():
        by_service.setdefault(service, {})[metric_type] = series.status
    statuses = {name: worst(list(metrics.values())) for name, metrics in by_service.items()}
    services = [
        ServiceStatus(name, statuses[name], metrics) for name, metrics in sorted(by_service.items())
    ]
    status = health.overall = verdict(list(statuses.values()), alerts, quality.status)
    return Overview(
        status,
        services,
        alerts,
        QualitySummary(quality.score, quality.status, quality.sources),
        datetime.now(UTC),
    )


# ---------------------------------------------------------------- background work
async def _probes(app: web.Application) -> None:
    config, health = app[CONFIG], app[HEALTH]
    services = [s for s in config.services if s.http or s.tcp or s.postgres]
    if not services:
        return
    # a service may probe this exporter itself (the demo does): start once it listens
    await app[LIFECYCLE].wait_serving(timeout=5)
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        probers = [Prober(s, session) for s in services]

        def submit(prober: Prober, result: ProbeResult) -> None:
            service = prober.service
            window = health.uptime.setdefault(
                service.name, UptimeWindow(service.uptime_window.seconds)
            )
            ratio = window.add(time.monotonic(), result.up)
            health.writer.record(result.samples(service.name, ratio))

        await run_probes(probers, submit)


async def _host(app: web.Application) -> None:
    config, health = app[CONFIG], app[HEALTH]
    processes = {s.name: s.process for s in config.services if s.process is not None}
    if not config.host.enabled and not processes:
        return
    reader = await asyncio.to_thread(
        HostReader, config.host.mounts, processes, host=config.host.enabled
    )

    def submit(samples: list[Sample]) -> None:
        health.writer.record(samples)

    await run_host(reader, config.host.interval.seconds, submit)


async def _refresh(app: web.Application) -> None:
    """Re-read API overrides (other replicas may have changed them) and the overview verdict."""
    db, health = app[DATABASE], app[HEALTH]
    interval = app[CONFIG].metrics.refresh_interval.seconds
    await db.wait_ready()
    while True:
        try:
            async with db.connection() as conn:
                rows = await load_thresholds(conn, db.schema)
            for row in rows:
                _install(health, row)
            await build_overview(app)
        except StorageUnavailable:
            pass
        await asyncio.sleep(interval)


async def _seed_demo(app: web.Application) -> None:
    """Store a day of demo history once (only into a database without demo samples)."""
    db, health = app[DATABASE], app[HEALTH]
    await db.wait_ready()
    samples = demo_history(datetime.now(UTC))
    rows = []
    for sample in samples:
        rule, _ = health.rules.rule_for(sample.key)
        track = first_track(classify(sample.value, rule))
        rows.append(to_row(Evaluated(sample, Series(sample, rule, track, 0.0))))
    async with db.transaction() as conn:
        if await conn.fetchval(DEMO_SEEDED.format(schema=db.schema)):
            return
        stored = await insert_samples(conn, db.schema, rows)
    app[SELF_METRICS].writes_committed.labels("system_health_metrics").inc(len(stored))
    log.info("demo health history seeded", extra={"rows": len(stored)})


class OverallCollector:
    """``monitoring_overall_status``: the overview's verdict, refreshed in the background."""

    def __init__(self, health: Health) -> None:
        self.health = health

    def collect(self) -> Iterator[Metric]:
        """The last verdict, if one was computed yet."""
        if self.health.overall is not None:
            yield GaugeMetricFamily(
                "monitoring_overall_status",
                "The overview's verdict: 0 healthy, 1 warning, 2 critical.",
                STATUS_CODE[self.health.overall],
            )


# ---------------------------------------------------------------- wiring
def setup(app: web.Application) -> None:
    """Register this feature's routes, collectors and lifetimes."""
    config = app[CONFIG]
    rules = RuleBook(configured_rules(config))
    store = SeriesStore(
        rules,
        ttl=config.metrics.series_ttl.seconds,
        cap=config.metrics.max_series_per_family,
    )
    exposition = HealthExposition(store, rules)
    writer = SampleWriter(app[DATABASE], store, app[SELF_METRICS])
    health = app[HEALTH] = Health(rules, store, exposition, writer)
    app[EXPOSITION].add_prerendered("health", exposition)
    app[EXPOSITION].add("overview", OverallCollector(health))

    app.cleanup_ctx.append(background("health-writer", lambda a: writer.run()))
    app.cleanup_ctx.append(background("health-probes", _probes))
    app.cleanup_ctx.append(background("health-host", _host))
    app.cleanup_ctx.append(background("health-refresh", _refresh))
    if config.demo:
        app.cleanup_ctx.append(background("health-demo", _seed_demo))

    api = app[API]
    bad = {400: "invalid request or series_limit"}
    api.add(
        app,
        Route(
            "POST",
            "/api/v1/health-metrics",
            post_metrics,
            "Record one health metric or an array of them",
            "write",
            body=PushBody,
            response=(HealthMetric, HealthMetricList),
            status=201,
            tags=TAGS,
            responses=bad,
        ),
    )
    api.add(
        app,
        Route(
            "GET",
            "/api/v1/health-metrics",
            get_metrics,
            "Stored health samples, newest first",
            "read",
            query=HealthMetricQuery,
            response=Page[HealthMetric],
            tags=TAGS,
        ),
    )
    api.add(
        app,
        Route(
            "GET",
            "/api/v1/thresholds",
            get_thresholds,
            "Threshold rules in force",
            "read",
            response=ThresholdList,
            tags=TAGS,
        ),
    )
    api.add(
        app,
        Route(
            "PUT",
            "/api/v1/thresholds/{service}/{metric_type}",
            put_threshold,
            "Override a threshold rule (versioned, effective on the next sample)",
            "admin",
            body=ThresholdIn,
            response=ThresholdOut,
            path_params=ThresholdPath,
            tags=TAGS,
            responses={409: "the rule is not at the expected version"},
        ),
    )
    api.add(
        app,
        Route(
            "DELETE",
            "/api/v1/thresholds/{service}/{metric_type}",
            delete_threshold,
            "Remove a rule set through the API (the configured rule applies again)",
            "admin",
            query=ThresholdRemoval,
            response=ThresholdOut,
            path_params=ThresholdPath,
            tags=TAGS,
            responses={
                404: "no rule was set through the API",
                409: "the rule is not at the expected version",
            },
        ),
    )
    api.add(
        app,
        Route(
            "GET",
            "/api/v1/overview",
            get_overview,
            "Overall status, services, active alerts and data quality",
            "read",
            response=Overview,
            tags=TAGS,
        ),
    )
