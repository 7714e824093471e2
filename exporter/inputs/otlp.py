"""OpenTelemetry traces (OTLP/HTTP) as performance logs: the request in its two encodings, and
the mapping of each span to a record.

Protobuf bodies are decoded with the official ``opentelemetry-proto`` types. JSON bodies
follow OTLP/JSON (lowerCamelCase keys, hex trace and span ids, 64-bit integers as strings or
numbers, enums as integers, unknown fields ignored) and are decoded with the msgspec types
below, which double as the OpenAPI description: protobuf's own JSON mapping would read the
ids as base64, not hex, and accepts shapes no schema states. Both become the same plain
:class:`Span` values, so the mapping is written once.

The mapping (README "OpenTelemetry"): span name → ``operation_name``; the ``operation.type``
attribute, else the span kind → ``operation_type``; status ERROR → ``error`` (its message →
``error_message``), UNSET or OK → ``success``; end minus start → ``duration_ms``; the end →
``recorded_at``; ``enduser.id`` → ``user_id``; trace and span ids, the parent, the kind, the
resource's ``service.name``, the scope and the attributes → ``request_details``. A span that
cannot be a record (no name, no times, an end before its start, an unknown status code, an
``operation.type`` no record may have, an end outside retention) is rejected on its own and
reported in the response's ``partial_success``; the others are stored. Oversized values are
cut to :class:`Limits`, never refused.
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import msgspec
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue as PbAnyValue

from exporter.domain.performance_log import CLOCK_SKEW, MAX_DURATION_MS

# ----------------------------------------------------------------------------- OTLP/JSON types

HexTraceId = Annotated[str, msgspec.Meta(pattern="^([0-9a-fA-F]{32})?$")]
HexSpanId = Annotated[str, msgspec.Meta(pattern="^([0-9a-fA-F]{16})?$")]
# int64/fixed64 in JSON: a number or a string of digits
Int64 = int | Annotated[str, msgspec.Meta(pattern="^-?[0-9]{1,20}$")]
Double = float | Annotated[str, msgspec.Meta(pattern="^(NaN|-?Infinity)$")]


class ArrayValue(msgspec.Struct, rename="camel"):
    """An array attribute value."""

    values: list[AnyValue] | None = None


class KeyValueList(msgspec.Struct, rename="camel"):
    """A map attribute value."""

    values: list[KeyValue] | None = None


class AnyValue(msgspec.Struct, rename="camel"):
    """An attribute value: one of its fields is set."""

    string_value: str | None = None
    bool_value: bool | None = None
    int_value: Int64 | None = None
    double_value: Double | None = None
    array_value: ArrayValue | None = None
    kvlist_value: KeyValueList | None = None
    bytes_value: Annotated[str, msgspec.Meta(pattern="^[A-Za-z0-9+/=_-]*$")] | None = None


class KeyValue(msgspec.Struct, rename="camel"):
    """A named attribute."""

    key: str = ""
    value: AnyValue | None = None


class Status(msgspec.Struct, rename="camel"):
    """A span's status: code 0 unset, 1 ok, 2 error."""

    code: int | None = None
    message: str | None = None


class JsonSpan(msgspec.Struct, rename="camel"):
    """One span (the fields a performance log needs; others are ignored)."""

    trace_id: HexTraceId = ""
    span_id: HexSpanId = ""
    parent_span_id: HexSpanId | None = None
    name: str | None = None
    kind: int | None = None
    start_time_unix_nano: Int64 | None = None
    end_time_unix_nano: Int64 | None = None
    attributes: list[KeyValue] | None = None
    status: Status | None = None


class Scope(msgspec.Struct, rename="camel"):
    """The instrumentation scope."""

    name: str | None = None
    version: str | None = None


class ScopeSpans(msgspec.Struct, rename="camel"):
    """The spans of one instrumentation scope."""

    scope: Scope | None = None
    spans: list[JsonSpan] | None = None


class Resource(msgspec.Struct, rename="camel"):
    """The entity that produced the spans (its ``service.name``, among others)."""

    attributes: list[KeyValue] | None = None


class ResourceSpans(msgspec.Struct, rename="camel"):
    """The spans of one resource."""

    resource: Resource | None = None
    scope_spans: list[ScopeSpans] | None = None


class ExportTraceRequest(msgspec.Struct, rename="camel"):
    """An OTLP/HTTP trace export (``ExportTraceServiceRequest``) in OTLP/JSON.

    The same request in protobuf (``application/x-protobuf``) is accepted too. Unknown fields
    are ignored, as OTLP requires.
    """

    resource_spans: list[ResourceSpans] | None = None


class PartialSuccess(msgspec.Struct, rename="camel", omit_defaults=True):
    """How many spans were rejected, and why (the others were stored)."""

    rejected_spans: int = 0
    error_message: str = ""


class ExportTraceResponse(msgspec.Struct, rename="camel", omit_defaults=True):
    """The answer (``ExportTraceServiceResponse``): ``partialSuccess`` only when spans were
    rejected."""

    partial_success: PartialSuccess | None = None


json_decoder = msgspec.json.Decoder(ExportTraceRequest)
_encoder = msgspec.json.Encoder()

# ----------------------------------------------------------------------------- plain spans


@dataclass(frozen=True, slots=True)
class Limits:
    """What a span is cut to (documented in README "OpenTelemetry")."""

    #: characters of one string attribute value (longer ones are cut)
    attribute_value_length: int = 1024
    #: attributes kept per span (the rest are dropped and counted)
    attributes: int = 128
    #: items kept of one array or map attribute value
    items: int = 128
    #: levels of arrays and maps inside an attribute value
    depth: int = 8
    #: bytes of a record's request_details (attributes are dropped, largest first, to fit)
    details_bytes: int = 64 << 10
    #: how old a span's end may be (the retention of performance logs)
    retention: timedelta = timedelta(days=14)


@dataclass(frozen=True, slots=True)
class Span:
    """A span in plain values, whichever encoding it came in."""

    where: str
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    trace_id: str
    span_id: str
    parent_span_id: str
    attributes: list[tuple[str, Any]]
    service_name: str | None
    scope: str | None


@dataclass(slots=True)
class Mapped:
    """The records of a request as columns, and the spans that could not be records."""

    operation_type: list[str]
    operation_name: list[str | None]
    duration_ms: list[float]
    status: list[str]
    error_message: list[str | None]
    user_id: list[str | None]
    request_details: list[str | None]
    recorded_at: list[datetime | None]
    rejected: list[str]

    def __len__(self) -> int:
        return len(self.status)


class Malformed(Exception):
    """The body is not an OTLP trace export (the message says why and where)."""

    def __init__(self, message: str, path: str = "(body)") -> None:
        super().__init__(message)
        self.path = path


# ----------------------------------------------------------------------------- decoding


def decode_protobuf(body: bytes) -> list[Span]:
    """The spans of a protobuf ``ExportTraceServiceRequest``; Malformed when it is none."""
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except (DecodeError, RecursionError, ValueError) as exc:
        raise Malformed(f"not a protobuf ExportTraceServiceRequest: {exc}") from None
    spans = []
    for r, resource_spans in enumerate(request.resource_spans):
        resource = [(kv.key, _pb_value(kv.value)) for kv in resource_spans.resource.attributes]
        service = _service(resource)
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            scope = scope_spans.scope.name or None
            for i, span in enumerate(scope_spans.spans):
                spans.append(
                    Span(
                        where=f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]",
                        name=span.name,
                        kind=span.kind,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        status_code=span.status.code,
                        status_message=span.status.message,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes=[(kv.key, _pb_value(kv.value)) for kv in span.attributes],
                        service_name=service,
                        scope=scope,
                    )
                )
    return spans


def decode_json(body: bytes) -> list[Span]:
    """The spans of an OTLP/JSON ``ExportTraceServiceRequest``; msgspec's errors propagate
    (the web layer names the field)."""
    request = json_decoder.decode(body)
    spans = []
    for r, resource_spans in enumerate(request.resource_spans or ()):
        resource_attributes = (resource_spans.resource or Resource()).attributes or ()
        service = _service([(kv.key, _json_value(kv.value)) for kv in resource_attributes])
        for s, scope_spans in enumerate(resource_spans.scope_spans or ()):
            scope = (scope_spans.scope or Scope()).name or None
            for i, span in enumerate(scope_spans.spans or ()):
                status = span.status or Status()
                spans.append(
                    Span(
                        where=f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]",
                        name=span.name or "",
                        kind=span.kind or 0,
                        start_ns=_int(span.start_time_unix_nano),
                        end_ns=_int(span.end_time_unix_nano),
                        status_code=status.code or 0,
                        status_message=status.message or "",
                        trace_id=span.trace_id.lower(),
                        span_id=span.span_id.lower(),
                        parent_span_id=(span.parent_span_id or "").lower(),
                        attributes=[
                            (kv.key, _json_value(kv.value)) for kv in span.attributes or ()
                        ],
                        service_name=service,
                        scope=scope,
                    )
                )
    return spans


def _int(value: int | str | None) -> int:
    return 0 if value is None else int(value)


def _service(attributes: list[tuple[str, Any]]) -> str | None:
    for key, value in attributes:
        if key == "service.name" and isinstance(value, str):
            return value
    return None


# levels of arrays and maps read from a value at all (Limits.depth then cuts further)
_READ_DEPTH = 32


def _pb_value(value: PbAnyValue, depth: int = 0) -> Any:
    if depth > _READ_DEPTH:
        return _CUT
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return value.bool_value
    if which == "int_value":
        return value.int_value
    if which == "double_value":
        return value.double_value
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if which == "array_value":
        return [_pb_value(v, depth + 1) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _pb_value(kv.value, depth + 1) for kv in value.kvlist_value.values}
    return None


def _json_value(value: AnyValue | None, depth: int = 0) -> Any:
    if value is None:
        return None
    if depth > _READ_DEPTH:
        return _CUT
    if value.string_value is not None:
        return value.string_value
    if value.bool_value is not None:
        return value.bool_value
    if value.int_value is not None:
        return int(value.int_value)
    if value.double_value is not None:
        return float(value.double_value)
    if value.bytes_value is not None:
        return value.bytes_value
    if value.array_value is not None:
        return [_json_value(v, depth + 1) for v in value.array_value.values or ()]
    if value.kvlist_value is not None:
        return {kv.key: _json_value(kv.value, depth + 1) for kv in value.kvlist_value.values or ()}
    return None


# ----------------------------------------------------------------------------- mapping

KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}
_OPERATION_TYPE = re.compile(r"^[a-z][a-z0-9_]*$")
_MAX_NAME = 500
_MAX_USER = 200
_MAX_ERROR = 16384
_CUT = "…"
#: rejections named in partial_success.error_message; the rest are counted
_NAMED = 10


def _text(value: str, limit: int) -> str:
    """A string PostgreSQL can store (no NUL), cut to ``limit`` characters."""
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    return value if len(value) <= limit else value[: limit - 1] + _CUT


def _plain(value: Any, limits: Limits, depth: int = 0) -> Any:
    """An attribute value as JSON-storable data within the limits."""
    if isinstance(value, str):
        return _text(value, limits.attribute_value_length)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("inf", "Infinity").replace("nan", "NaN")
    if isinstance(value, list | dict):
        if depth >= limits.depth:
            return _CUT
        if isinstance(value, list):
            return [_plain(v, limits, depth + 1) for v in value[: limits.items]]
        items = list(value.items())[: limits.items]
        return {_text(k, 256): _plain(v, limits, depth + 1) for k, v in items}
    return value


def _problem(span: Span, end: datetime | None, now: datetime, limits: Limits) -> str | None:
    if not span.name:
        return "has no name"
    if span.start_ns <= 0 or span.end_ns <= 0:
        return "has no start or end time"
    if span.end_ns < span.start_ns:
        return "ends before it starts"
    if (span.end_ns - span.start_ns) / 1e6 > MAX_DURATION_MS:
        return f"lasts longer than {MAX_DURATION_MS:g} ms"
    if span.status_code not in (0, 1, 2):
        return f"has an unknown status code {span.status_code}"
    if end is None or end > now + CLOCK_SKEW:
        return "ends in the future"
    if end < now - limits.retention:
        return "ended before the retention period of performance logs"
    for key, value in span.attributes:
        if key == "operation.type" and not (
            isinstance(value, str) and len(value) <= 64 and _OPERATION_TYPE.match(value)
        ):
            return "has an operation.type attribute that is not ^[a-z][a-z0-9_]*$ (64 at most)"
    return None


def _end(span: Span) -> datetime | None:
    try:
        return datetime.fromtimestamp(span.end_ns / 1e9, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _details(span: Span, limits: Limits) -> str:
    attributes: dict[str, Any] = {}
    for key, value in span.attributes[: limits.attributes]:
        attributes[_text(key, 256)] = _plain(value, limits)
    dropped = max(0, len(span.attributes) - limits.attributes)
    details: dict[str, Any] = {"trace_id": span.trace_id, "span_id": span.span_id}
    if span.parent_span_id:
        details["parent_span_id"] = span.parent_span_id
    details["span_kind"] = KINDS.get(span.kind, "internal")
    if span.service_name is not None:
        details["service.name"] = _text(span.service_name, limits.attribute_value_length)
    if span.scope is not None:
        details["scope"] = _text(span.scope, limits.attribute_value_length)
    details["attributes"] = attributes
    text = _encoder.encode(details)
    if len(text) > limits.details_bytes:
        # the largest attributes go first, until the record fits
        sizes = sorted(attributes, key=lambda k: len(_encoder.encode(attributes[k])))
        while sizes and len(text) > limits.details_bytes:
            del attributes[sizes.pop()]
            dropped += 1
            details["dropped_attributes"] = dropped
            text = _encoder.encode(details)
    elif dropped:
        details["dropped_attributes"] = dropped
        text = _encoder.encode(details)
    return text.decode()


def to_records(spans: list[Span], now: datetime, limits: Limits) -> Mapped:
    """Map spans to performance-log columns; the spans that cannot be records are rejected."""
    out = Mapped([], [], [], [], [], [], [], [], [])
    for span in spans:
        end = _end(span)
        problem = _problem(span, end, now, limits)
        if problem is not None:
            out.rejected.append(f"{span.where} {problem}")
            continue
        attributes = dict(span.attributes)
        kind = attributes.get("operation.type")
        user = attributes.get("enduser.id")
        error = span.status_code == 2
        by_kind = KINDS.get(span.kind, "internal")
        out.operation_type.append(kind if isinstance(kind, str) else by_kind)
        out.operation_name.append(_text(span.name, _MAX_NAME))
        out.duration_ms.append((span.end_ns - span.start_ns) / 1e6)
        out.status.append("error" if error else "success")
        out.error_message.append(
            _text(span.status_message, _MAX_ERROR) if error and span.status_message else None
        )
        out.user_id.append(
            _text(str(user), _MAX_USER)
            if isinstance(user, str | int) and not isinstance(user, bool) and user != ""
            else None
        )
        out.request_details.append(_details(span, limits))
        out.recorded_at.append(end)
    return out


def partial_success(rejected: list[str]) -> tuple[int, str]:
    """(rejected_spans, error_message) of the response."""
    if not rejected:
        return 0, ""
    named = "; ".join(rejected[:_NAMED])
    more = f"; and {len(rejected) - _NAMED} more" if len(rejected) > _NAMED else ""
    return len(rejected), f"{len(rejected)} spans rejected: {named}{more}"


def response(rejected: list[str], protobuf: bool) -> bytes:
    """The ExportTraceServiceResponse in the request's encoding."""
    count, message = partial_success(rejected)
    if protobuf:
        answer = ExportTraceServiceResponse()
        if count:
            answer.partial_success.CopyFrom(
                ExportTracePartialSuccess(rejected_spans=count, error_message=message)
            )
        return answer.SerializeToString()
    partial = PartialSuccess(count, message) if count else None
    return _encoder.encode(ExportTraceResponse(partial))
