"""POST /v1/traces: OpenTelemetry's OTLP/HTTP trace export, stored as performance logs.

Parse (protobuf or JSON, gzip) → map each span (``inputs.otlp``) → the performance-log
writer (the same group commit as the JSON API: the 200 waits for the commit) → the OTLP
response in the request's encoding, with ``partial_success`` naming the spans that could not
be records. Errors (400, 401, 413, 415, 503) are the API's JSON envelope.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import msgspec
from aiohttp import web

from exporter.features.core import CONFIG, SELF_METRICS
from exporter.inputs import otlp
from exporter.storage import performance_logs as store
from exporter.storage.idempotency import Duplicate
from exporter.web import idempotency
from exporter.web.api import API, Route
from exporter.web.errors import ApiError, Detail
from exporter.web.payload import located, media_type, read_body, too_deep, unstorable
from exporter.web.performance_logs import TABLE, commit

PATH = "/v1/traces"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
LIMITS = web.AppKey("otlp_limits", otlp.Limits)


def _spans(body: bytes, ctype: str) -> list[otlp.Span]:
    """The spans of the body; 400 naming what is malformed."""
    if ctype == PROTOBUF:
        try:
            return otlp.decode_protobuf(body)
        except otlp.Malformed as exc:
            raise ApiError(
                400, "malformed_protobuf", str(exc), [Detail(exc.path, str(exc))]
            ) from None
    try:
        return otlp.decode_json(body)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_body", "the body is not valid", [located(exc)]) from None
    except msgspec.DecodeError as exc:
        bad = unstorable(body)
        if bad is not None:
            raise ApiError(400, "invalid_body", "the body is not valid", [bad]) from None
        raise ApiError(
            400, "malformed_json", "the body is not well-formed JSON", [Detail("(body)", str(exc))]
        ) from None
    except RecursionError:
        raise ApiError(400, "invalid_body", "the body is not valid", [too_deep(body)]) from None


async def post_traces(request: web.Request) -> web.Response:
    """Store each span as a performance log; answered once committed. Spans that cannot be
    records are counted in ``partialSuccess`` (with the reasons); the others are stored."""
    app = request.app
    config = app[CONFIG]
    ctype = media_type(request, (PROTOBUF, JSON))
    try:
        body = await read_body(request, config.web.performance_logs_max_body_bytes)
        key = idempotency.key_of(request, body)
        if (replayed := await idempotency.replay(request, key)) is not None:
            replayed.content_type = ctype
            return replayed
        spans = _spans(body, ctype)
        if len(spans) > config.performance_logs.max_records_per_request:
            raise ApiError(
                413,
                "payload_too_large",
                f"a request may hold at most {config.performance_logs.max_records_per_request}"
                " spans",
            )
    except ApiError as exc:
        app[SELF_METRICS].writes_rejected.labels(
            TABLE, "invalid" if exc.status == 400 else "too_large"
        ).inc()
        raise
    mapped = otlp.to_records(spans, datetime.now(UTC), app[LIMITS])
    if mapped.rejected:
        app[SELF_METRICS].writes_rejected.labels(TABLE, "invalid").inc(len(mapped.rejected))
    answer = otlp.response(mapped.rejected, ctype == PROTOBUF)
    if len(mapped):
        nothing: list[None] = [None] * len(mapped)
        rows = store.Rows(
            mapped.operation_type, mapped.operation_name, mapped.duration_ms, list(nothing),
            list(nothing), mapped.status, mapped.error_message, mapped.user_id,
            mapped.request_details, mapped.recorded_at,
        )  # fmt: skip
        done = await commit(request, rows, len(body), key, (200, answer))
        if isinstance(done, Duplicate):
            assert key is not None
            replayed = await idempotency.replayed(request, key)
            replayed.content_type = ctype
            return replayed
    return web.Response(body=answer, content_type=ctype)


def setup(app: web.Application) -> None:
    """Register the route (in the API table: the write scope, the OpenAPI document)."""
    config = app[CONFIG]
    app[LIMITS] = replace(
        otlp.Limits(),
        attribute_value_length=config.performance_logs.otlp_max_attribute_length,
        attributes=config.performance_logs.otlp_max_attributes,
        details_bytes=config.performance_logs.max_request_details_bytes,
        retention=timedelta(seconds=config.retention.performance_logs.seconds),
    )
    binary = {"type": "string", "format": "binary"}
    app[API].add(
        app,
        Route(
            "POST",
            PATH,
            post_traces,
            "OpenTelemetry OTLP/HTTP trace export: each span becomes a performance log",
            "write",
            body=otlp.ExportTraceRequest,
            response=otlp.ExportTraceResponse,
            content_types=(JSON,),
            tags=("performance logs", "OpenTelemetry"),
            responses={
                413: "body or span count over its limit",
                415: "neither application/x-protobuf nor application/json",
            },
            idempotent=True,
            other_bodies={PROTOBUF: binary},
            other_responses={PROTOBUF: binary},
        ),
    )
