"""Performance logs: the ingest (group commit), the queries, the histogram and the upkeep."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from aiohttp import web

from exporter.config import Config
from exporter.domain.limits import Text, Timestamp
from exporter.domain.performance_log import (
    Committed,
    PerformanceLog,
    PerformanceLogIn,
    Status,
    Summary,
    columns_valid,
    details_text,
    problems,
)
from exporter.features import performance_logs
from exporter.features.core import CONFIG, DATABASE, SELF_METRICS
from exporter.storage import StorageUnavailable
from exporter.storage import performance_log_queries as queries
from exporter.storage import performance_logs as store
from exporter.storage.group_commit import QueueFull, Rejected, TooLarge
from exporter.storage.idempotency import Duplicate, IdempotencyKey
from exporter.web import idempotency
from exporter.web.api import API, Route
from exporter.web.errors import ApiError, Detail, Handler
from exporter.web.pagination import DEFAULT_LIMIT, MAX_LIMIT, Page, after_cursor, next_cursor
from exporter.web.payload import (
    decode_json,
    json_response,
    located,
    media_type,
    parse_query,
    read_body,
    too_deep,
    unstorable,
)

log = logging.getLogger(__name__)

TABLE = "system_performance_logs"
NDJSON = "application/x-ndjson"
_MAX_DETAILS = 50  # problems listed in one 400 answer


@dataclass(frozen=True, slots=True)
class Limits:
    """The ingest's limits, read from the configuration once (they are used per request)."""

    retention: timedelta
    max_details_bytes: int
    max_body_bytes: int
    max_records: int

    @classmethod
    def of(cls, config: Config) -> Limits:
        """The limits of a configuration."""
        return cls(
            timedelta(seconds=config.retention.performance_logs.seconds),
            config.performance_logs.max_request_details_bytes,
            config.web.performance_logs_max_body_bytes,
            config.performance_logs.max_records_per_request,
        )


LIMITS = web.AppKey("performance_log_limits", Limits)

Limit = Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)]


class LogQuery(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Filters of GET /api/v1/performance-logs (time windows are [since, until)).

    ``cursor`` is a previous page's ``next_cursor``.
    """

    operation_type: Text | None = None
    operation_name: Text | None = None
    status: Status | None = None
    user_id: Text | None = None
    min_duration_ms: Annotated[float, msgspec.Meta(ge=0)] | None = None
    since: Timestamp | None = None
    until: Timestamp | None = None
    limit: Limit = DEFAULT_LIMIT
    cursor: Text | None = None


class SummaryQuery(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Window and filters of the summary; the window defaults to the last hour.

    ``since`` lies before ``until``.
    """

    operation_type: Text | None = None
    operation_name: Text | None = None
    user_id: Text | None = None
    since: Timestamp | None = None
    until: Timestamp | None = None
    limit: Limit = DEFAULT_LIMIT


LogBody = PerformanceLogIn | list[PerformanceLogIn]
_one_or_many: msgspec.json.Decoder[LogBody] = msgspec.json.Decoder(LogBody)
_one = msgspec.json.Decoder(PerformanceLogIn)
_many = msgspec.json.Decoder(list[PerformanceLogIn])


def _too_many(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"a request may hold at most {limit} records")


def _bad_line(n: int, detail: Detail) -> ApiError:
    return ApiError(400, "invalid_body", f"line {n} is not a valid record", [detail])


def parse_ndjson(body: bytes, max_records: int) -> tuple[list[PerformanceLogIn], list[int]]:
    """The records of an NDJSON body and their line numbers; 400 naming the first bad line."""
    numbered = [(n, line) for n, line in enumerate(body.split(b"\n"), 1) if line.strip()]
    if len(numbered) > max_records:
        raise _too_many(max_records)
    lines = [n for n, _ in numbered]
    try:
        # fast path: the lines as one JSON array, decoded in one call
        records = _many.decode(b"[" + b",".join(line for _, line in numbered) + b"]")
        if len(records) == len(numbered):
            return records, lines
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        pass
    records = []
    for n, line in numbered:
        where = f"line {n}"
        try:
            records.append(_one.decode(line))
        except msgspec.ValidationError as exc:
            raise _bad_line(n, located(exc, where)) from None
        except msgspec.DecodeError as exc:
            bad = unstorable(line, where)
            if bad is not None:
                raise _bad_line(n, bad) from None
            raise ApiError(
                400,
                "malformed_json",
                f"line {n} is not well-formed JSON",
                [Detail(where, str(exc))],
            ) from None
        except RecursionError:
            raise _bad_line(n, too_deep(line, where)) from None
    return records, lines


def parse_json(body: bytes, max_records: int) -> tuple[list[PerformanceLogIn], bool]:
    """The records of a JSON body (one object or an array) and whether it was an array."""
    decoded = decode_json(body, _one_or_many, check=False)  # to_rows checks, column-wise
    if isinstance(decoded, PerformanceLogIn):
        return [decoded], False
    if len(decoded) > max_records:
        raise _too_many(max_records)
    return decoded, True


def to_rows(
    records: list[PerformanceLogIn],
    path_of: Callable[[int], str],
    now: datetime,
    limits: Limits,
    depth: int = 2,
) -> store.Rows:
    """Check the rules beyond types and turn the records into columns; 400 when any fails.

    ``depth`` is the level of ``request_details`` in the body (3 inside a JSON array).
    """
    keep, max_details = limits.retention, limits.max_details_bytes
    if len(records) == 1 and not problems(
        r := records[0], now=now, retention=keep, max_details_bytes=max_details, depth=depth
    ):
        return store.Rows(
            [r.operation_type], [r.operation_name], [r.duration_ms], [r.memory_usage_bytes],
            [r.cpu_usage_percent], [r.status], [r.error_message], [r.user_id],
            [details_text(r)], [r.recorded_at],
        )  # fmt: skip
    # column by column: list comprehensions are several times faster than appends per row
    rows: store.Rows | None = None
    try:
        rows = store.Rows(
            [r.operation_type for r in records],
            [r.operation_name for r in records],
            [r.duration_ms for r in records],
            [r.memory_usage_bytes for r in records],
            [r.cpu_usage_percent for r in records],
            [r.status for r in records],
            [r.error_message for r in records],
            [r.user_id for r in records],
            [details_text(r) for r in records],
            [r.recorded_at for r in records],
        )
        texts = (rows.operation_name, rows.error_message, rows.user_id)
        if columns_valid(
            rows.duration_ms, rows.cpu_usage_percent, texts, rows.request_details,
            rows.recorded_at, now=now, retention=keep, max_details_bytes=max_details,
            depth=depth,
        ):  # fmt: skip
            return rows
    except UnicodeDecodeError:
        pass  # request_details that are not UTF-8: problems() names the record
    # something is wrong: name every problem, record by record
    details: list[Detail] = []
    for i, record in enumerate(records):
        found = problems(
            record, now=now, retention=keep, max_details_bytes=max_details, depth=depth
        )
        details += [Detail(f"{path_of(i)}{p.field}", p.message) for p in found]
        if len(details) >= _MAX_DETAILS:
            break
    if not details and rows is not None:
        return rows  # the fast check is conservative (e.g. durations summing past 1e308)
    raise ApiError(
        400, "invalid_body", "some records are not valid; none was stored", details[:_MAX_DETAILS]
    )


async def _read_body(request: web.Request) -> bytes:
    """The body within its limit (its content type is checked first: 415 before reading)."""
    limits = request.app[LIMITS]
    media_type(request, ("application/json", NDJSON))
    limit_bytes = limits.max_body_bytes
    declared = request.content_length
    if (
        declared is not None
        and declared <= limit_bytes
        and "Content-Encoding" not in request.headers
    ):
        body = await request.read()  # the common case, without read_body's chunk loop
    else:
        body = await read_body(request, limit_bytes)
    return body


def _rows(request: web.Request, body: bytes) -> store.Rows:
    """The request's records as columns (nothing else is kept); 400 naming every problem."""
    limits = request.app[LIMITS]
    ctype = media_type(request, ("application/json", NDJSON))
    limit = limits.max_records
    now = datetime.now(UTC)
    if ctype == NDJSON:
        records, lines = parse_ndjson(body, limit)
        return to_rows(records, lambda i: f"line {lines[i]}.", now, limits)
    records, many = parse_json(body, limit)
    path_of = (lambda i: f"[{i}].") if many else (lambda i: "")
    return to_rows(records, path_of, now, limits, 3 if many else 2)


async def post_logs(request: web.Request) -> web.Response:
    """Store one record, an array or NDJSON; answer once everything is committed."""
    rejected = request.app[SELF_METRICS].writes_rejected
    try:
        body = await _read_body(request)
        key = idempotency.key_of(request, body)
        if (replayed := await idempotency.replay(request, key)) is not None:
            return replayed
        rows = _rows(request, body)
    except ApiError as exc:
        # counted per request: a body that does not parse has no record count
        rejected.labels(TABLE, "invalid" if exc.status == 400 else "too_large").inc()
        raise
    committed = Committed(len(rows))
    done = await commit(request, rows, len(body), key, idempotency.render(200, committed))
    if isinstance(done, Duplicate):
        assert key is not None
        return await idempotency.replayed(request, key)
    return json_response(committed)


async def commit(
    request: web.Request,
    rows: store.Rows,
    body_bytes: int,
    key: IdempotencyKey | None,
    response: tuple[int, bytes],
) -> Duplicate | None:
    """Hand the records to the shared writer and wait for their commit; what can go wrong
    there as API errors (503 overloaded or unavailable, 413, 400 refused by the database)."""
    rejected = request.app[SELF_METRICS].writes_rejected
    try:
        return await performance_logs.ingest(request.app, rows, body_bytes, key, response)
    except QueueFull:
        rejected.labels(TABLE, "overloaded").inc(len(rows))
        raise ApiError(
            503,
            "overloaded",
            "too many records are waiting to be written; retry",
            headers={"Retry-After": "1"},
        ) from None
    except TooLarge:
        rejected.labels(TABLE, "too_large").inc(len(rows))
        raise ApiError(
            413, "payload_too_large", "the request is larger than the write queue"
        ) from None
    except Rejected as exc:
        rejected.labels(TABLE, "database").inc(len(rows))
        raise ApiError(
            400,
            "rejected",
            "the database refused the records; none was stored",
            [Detail("(body)", str(exc))],
        ) from None
    except StorageUnavailable:
        rejected.labels(TABLE, "unavailable").inc(len(rows))
        raise


def _log(row: Mapping[str, Any]) -> PerformanceLog:
    return PerformanceLog(
        **{k: v for k, v in row.items() if k != "request_details"},
        request_details=msgspec.Raw(row["request_details"].encode()),
    )


async def get_logs(request: web.Request) -> web.Response:
    """Records matching the filters, newest first, with a cursor for the next page."""
    q = parse_query(request, LogQuery)
    after = after_cursor(q.cursor)
    filters = {
        "operation_type": q.operation_type,
        "operation_name": q.operation_name,
        "status": q.status,
        "user_id": q.user_id,
        "min_duration_ms": q.min_duration_ms,
        "since": q.since,
        "until": q.until,
    }
    rows = await queries.select_logs(request.app[DATABASE], filters, after, q.limit)
    page = Page([_log(r) for r in rows], next_cursor(list(rows), q.limit, "recorded_at"))
    return json_response(page)


async def get_summary(request: web.Request) -> web.Response:
    """p50/p95/p99 duration and error rate per operation over a window (default: last hour),
    from the rollups: counts exact, percentiles within 1 % of the exact ones."""
    q = parse_query(request, SummaryQuery)
    until = q.until or datetime.now(UTC)
    since = q.since or until - timedelta(hours=1)
    if since >= until:
        raise ApiError(
            400, "invalid_query", "the window is empty", [Detail("since", "must be before until")]
        )
    since, until, items = await performance_logs.summary(
        request.app, since, until, q.operation_type, q.operation_name, q.user_id, q.limit
    )
    return json_response(Summary(since, until, items))


@web.middleware
async def self_instrument(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record the service's own API calls as performance logs (never the ingest itself)."""
    started = time.perf_counter()
    status = "error"
    try:
        response = await handler(request)
        status = "success" if response.status < 500 else "error"
        return response
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else None
        if route and route.startswith("/api/v1/") and route != "/api/v1/performance-logs":
            rows = store.Rows()
            rows.operation_type.append("api_call")
            rows.operation_name.append(f"{request.method} {route}")
            rows.duration_ms.append((time.perf_counter() - started) * 1000)
            rows.memory_usage_bytes.append(None)
            rows.cpu_usage_percent.append(None)
            rows.status.append(status)
            rows.error_message.append(None)
            rows.user_id.append(None)
            rows.request_details.append(None)
            rows.recorded_at.append(None)
            performance_logs.offer(request.app, rows)


def setup(app: web.Application) -> None:
    """Register the routes (and the self-instrumentation, when configured)."""
    config = app[CONFIG]
    app[LIMITS] = Limits.of(config)
    if config.performance_logs.self_instrument:
        # added while the app is being built, before aiohttp freezes its middleware list
        app.middlewares.append(self_instrument)
    api = app[API]
    tags = ("performance logs",)
    api.add(
        app,
        Route(
            "POST",
            "/api/v1/performance-logs",
            post_logs,
            "Store performance logs: one object, an array, or NDJSON; answered once committed",
            "write",
            body=PerformanceLogIn | list[PerformanceLogIn],
            response=Committed,
            content_types=("application/json", NDJSON),
            tags=tags,
            responses={413: "body or record count over its limit", 415: "unsupported content type"},
            idempotent=True,
        ),
    )
    api.add(
        app,
        Route(
            "GET",
            "/api/v1/performance-logs",
            get_logs,
            "List performance logs, newest first",
            "read",
            query=LogQuery,
            response=Page[PerformanceLog],
            tags=tags,
        ),
    )
    api.add(
        app,
        Route(
            "GET",
            "/api/v1/performance-logs/summary",
            get_summary,
            "p50/p95/p99 duration and error rate per operation over a window",
            "read",
            query=SummaryQuery,
            response=Summary,
            tags=tags,
        ),
    )
