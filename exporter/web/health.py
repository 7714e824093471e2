"""The health routes: push, history, thresholds and the overview (state in features.health)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import msgspec
from aiohttp import web

from exporter.domain.health import Status
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
    ThresholdIn,
    ThresholdList,
    ThresholdOut,
    ThresholdPath,
)
from exporter.domain.health_rules import Key
from exporter.domain.health_series import SeriesLimit
from exporter.domain.limits import Text, Timestamp, Version
from exporter.features import health, overview
from exporter.features.core import CONFIG, DATABASE, SELF_METRICS
from exporter.features.health import HEALTH, Health
from exporter.storage import health as storage
from exporter.storage.idempotency import Duplicate
from exporter.storage.thresholds import NoOverride, VersionConflict
from exporter.web import idempotency
from exporter.web.api import API, Route
from exporter.web.errors import ApiError, Detail
from exporter.web.pagination import MAX_LIMIT, Page, after_cursor, next_cursor
from exporter.web.payload import (
    decode_json,
    json_response,
    media_type,
    parse_path,
    parse_query,
    read_body,
)

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
    key = idempotency.key_of(request, raw)
    if (replayed := await idempotency.replay(request, key)) is not None:
        return replayed
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

    def shape(rows: list[Any]) -> HealthMetric | HealthMetricList:
        items = [_metric(row) for row in rows]
        return items[0] if isinstance(body, HealthMetricIn) else HealthMetricList(items)

    def render(outcome: list[Any] | SeriesLimit) -> tuple[int, bytes]:
        if isinstance(outcome, SeriesLimit):
            return idempotency.render_error(_series_limit(outcome))
        return idempotency.render(201, shape(outcome))

    try:
        stored = await health.push(app, samples, key, render)
    except SeriesLimit as exc:
        raise _series_limit(exc) from None
    if isinstance(stored, Duplicate):
        assert key is not None
        return await idempotency.replayed(request, key)
    return json_response(shape(stored), status=201)


def _series_limit(exc: SeriesLimit) -> ApiError:
    return ApiError(400, "series_limit", str(exc))


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
    rows = await storage.list_samples(request.app[DATABASE], filters, after, query.limit)
    return json_response(
        Page([_metric(r) for r in rows], next_cursor(rows, query.limit, "recorded_at"))
    )


def _threshold_out(state: Health, key: Key) -> ThresholdOut:
    series = state.store.get((key[0], key[1], ""))
    rule, origin = state.rules.rule_for(key, series.sample.pushed_rule if series else None)
    override = state.rules.active_override(key)
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
    state = request.app[HEALTH]
    keys = state.rules.keys() | {(k[0], k[1]) for k, s in state.store.items() if not k[2]}
    outs = [_threshold_out(state, key) for key in sorted(keys)]
    items = [o for o in outs if o.origin != "none"]
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
        key = await health.save_rule(app, (service, metric_type), config, body.expect_version)
    except VersionConflict:
        raise ApiError(409, "conflict", "the rule changed since the expected version") from None
    return json_response(_threshold_out(app[HEALTH], key))


async def delete_threshold(request: web.Request) -> web.Response:
    """Remove a rule set through the API: the YAML's (or the built-in) rule is in force again."""
    app = request.app
    service, metric_type = _threshold_key(request)
    query = parse_query(request, ThresholdRemoval)
    try:
        key = await health.remove_rule(app, (service, metric_type), query.expect_version)
    except NoOverride:
        raise ApiError(
            404, "not_found", f"no rule for {service}/{metric_type} was set through the API"
        ) from None
    except VersionConflict:
        raise ApiError(409, "conflict", "the rule changed since the expected version") from None
    return json_response(_threshold_out(app[HEALTH], key))


async def get_overview(request: web.Request) -> web.Response:
    """Overall status, status per service, active alerts by severity, data-quality average."""
    return json_response(await overview.current(request.app))


# ---------------------------------------------------------------- wiring
def setup(app: web.Application) -> None:
    """Register this feature's routes."""
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
            idempotent=True,
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
