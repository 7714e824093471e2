"""Data quality over HTTP: the push API, the list and the overview.

Handlers are short: parse → domain rules → storage → reply. The checks and the feature's
state are in ``quality_checks``; the families in ``exposition.quality``.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

import msgspec
from aiohttp import web

from exporter.config.quality import DEFAULT_LEVELS
from exporter.domain import quality as q
from exporter.domain.limits import Count, NoNul, Text, Timestamp
from exporter.features import quality
from exporter.features.core import CONFIG, DATABASE, SELF_METRICS
from exporter.storage import quality as storage
from exporter.storage.idempotency import Duplicate
from exporter.web import idempotency
from exporter.web.api import API, Route
from exporter.web.errors import ApiError, Detail
from exporter.web.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, after_cursor, next_cursor
from exporter.web.payload import decode_json, json_response, media_type, parse_query, read_body

log = logging.getLogger(__name__)

TABLE = "data_quality_indicators"
Name = Annotated[str, NoNul, msgspec.Meta(min_length=1, max_length=200)]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]


class LevelsIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Score levels: below warning is a warning, below critical is critical."""

    warning: Percent
    critical: Percent


class IndicatorIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A quality measurement: give ``score``, or ``total_records`` and ``valid_records``.

    The counts go together and valid_records <= total_records; levels.critical <=
    levels.warning; ``issues`` nests at most 64 levels.
    """

    source: Name
    dataset: Name
    dimension: q.Dimension
    total_records: Count | None = None
    valid_records: Count | None = None
    score: Percent | None = None
    issues: list[Any] = msgspec.field(default_factory=list)
    levels: LevelsIn | None = None
    measured_at: Timestamp | None = None


class Indicator(msgspec.Struct, frozen=True):
    """A stored measurement, with its table's columns."""

    id: int
    source: str
    dataset: str
    dimension: str
    score: float | None
    total_records: int | None
    valid_records: int | None
    status: str
    warning_level: float | None
    critical_level: float | None
    check_name: str | None
    issues: list[Any]
    measured_at: datetime
    created_at: datetime


class IndicatorQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Filters of the indicator list; ``cursor`` is a previous page's ``next_cursor``."""

    source: Text | None = None
    dataset: Text | None = None
    dimension: q.Dimension | None = None
    since: Timestamp | None = None
    until: Timestamp | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT
    cursor: Text | None = None


class OverviewQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Only measurements since this time take part (default: all stored)."""

    since: Timestamp | None = None


IndicatorBody = IndicatorIn | list[IndicatorIn]
_decoder: msgspec.json.Decoder[IndicatorBody] = msgspec.json.Decoder(IndicatorBody)


# ---------------------------------------------------------------- push, list, overview


def _validate(item: IndicatorIn, path: str) -> list[Detail]:
    """Rules the types cannot say; ``path`` is "" or "[i]." (the item's place in the body)."""
    problems: list[Detail] = []
    total, valid = item.total_records, item.valid_records
    if (total is None) != (valid is None):
        missing = "valid_records" if valid is None else "total_records"
        problems.append(Detail(path + missing, "total_records and valid_records go together"))
    elif total is not None and valid is not None and valid > total:
        problems.append(Detail(path + "valid_records", "must not exceed total_records"))
    if item.score is None and total is None:
        problems.append(Detail(path + "score", "give score, or total_records and valid_records"))
    if item.levels is not None and item.levels.critical > item.levels.warning:
        problems.append(Detail(path + "levels.critical", "must not be above warning"))
    return problems


def _new_row(item: IndicatorIn) -> storage.NewIndicator:
    issues = msgspec.json.encode(item.issues).decode()
    score = item.score
    if score is None and item.total_records is not None and item.valid_records is not None:
        score = q.score_of(item.total_records, item.valid_records)
    given = item.levels or DEFAULT_LEVELS
    levels = q.Levels(given.warning, given.critical)
    return storage.NewIndicator(
        source=item.source,
        dataset=item.dataset,
        dimension=item.dimension,
        score=score,
        total_records=item.total_records,
        valid_records=item.valid_records,
        status=q.status_of(score, levels),
        warning_level=levels.warning,
        critical_level=levels.critical,
        check_name=None,
        issues_json=issues,
        measured_at=item.measured_at,
    )


def _indicator(row: Any) -> Indicator:
    values = dict(row)
    values["issues"] = msgspec.json.decode(values["issues"])
    return Indicator(**values)


async def post_indicators(request: web.Request) -> web.Response:
    """Record one indicator or an array of them, atomically."""
    app = request.app
    rejected = app[SELF_METRICS].writes_rejected
    media_type(request, ("application/json",))
    body = await read_body(request, app[CONFIG].web.max_body_bytes)
    key = idempotency.key_of(request, body)
    if (replayed := await idempotency.replay(request, key)) is not None:
        return replayed
    try:
        parsed = decode_json(body, _decoder)
        items = parsed if isinstance(parsed, list) else [parsed]
        prefix = [f"[{i}]." for i in range(len(items))] if isinstance(parsed, list) else [""]
        problems = [d for item, p in zip(items, prefix, strict=True) for d in _validate(item, p)]
        if problems:
            raise ApiError(400, "invalid_body", "the body is not valid", problems)
        rows = [_new_row(item) for item in items]
    except ApiError:
        rejected.labels(TABLE, "invalid").inc()
        raise

    def shape(stored: list[Any]) -> Any:
        out = [_indicator(r) for r in stored]
        return Page(out, None) if isinstance(parsed, list) else out[0]

    try:
        stored = await quality.push(app, rows, key, lambda r: idempotency.render(201, shape(r)))
    except storage.QualitySeriesLimit as exc:
        rejected.labels(TABLE, "series_limit").inc(len(rows))
        raise ApiError(400, "series_limit", str(exc)) from None
    if isinstance(stored, Duplicate):
        assert key is not None
        return await idempotency.replayed(request, key)
    return json_response(shape(stored), status=201)


async def list_indicators(request: web.Request) -> web.Response:
    """Stored measurements, newest first, filtered and paginated."""
    query = parse_query(request, IndicatorQuery)
    after = after_cursor(query.cursor)
    filters = {
        "source": query.source,
        "dataset": query.dataset,
        "dimension": query.dimension,
        "since": query.since,
        "until": query.until,
    }
    rows = await storage.page(request.app[DATABASE], filters, after, query.limit)
    items = [_indicator(r) for r in rows]
    return json_response(Page(items, next_cursor(rows, query.limit, "measured_at")))


async def quality_overview(request: web.Request) -> web.Response:
    """Latest score per source x dimension, per source, and the cross-source average."""
    query = parse_query(request, OverviewQuery)
    return json_response(await quality.overview(request.app, query.since))


def setup(app: web.Application) -> None:
    """Register the quality routes."""
    api = app[API]
    tags = ("quality",)
    api.add(app, Route("POST", "/api/v1/quality-indicators", post_indicators,
                       "Record one quality indicator or an array of them", "write",
                       body=IndicatorBody, response=(Indicator, Page[Indicator]), status=201,
                       tags=tags, idempotent=True))  # fmt: skip
    api.add(app, Route("GET", "/api/v1/quality-indicators", list_indicators,
                       "List quality indicators, newest first", "read",
                       query=IndicatorQuery, response=Page[Indicator], tags=tags))  # fmt: skip
    api.add(app, Route("GET", "/api/v1/quality/overview", quality_overview,
                       "Latest score per source and dimension, per source, and overall", "read",
                       query=OverviewQuery, response=q.Overview, tags=tags))  # fmt: skip
