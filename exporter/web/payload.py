"""Request bodies and queries: size limits, content types, gzip, and strict decoding."""

from __future__ import annotations

import functools
import json
import re
import zlib
from datetime import datetime
from typing import Any, TypeVar, overload

import msgspec
import msgspec.inspect
from aiohttp import web

from exporter.domain.limits import MAX_DEPTH, NUL, TOO_DEEP, join, value_problems
from exporter.web.errors import ApiError, Detail

T = TypeVar("T")

_CHUNK = 64 * 1024
_AT = re.compile(r" - at `\$(.*)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `([^`]*)`")


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "payload_too_large", f"the request body exceeds {limit} bytes")


def media_type(request: web.Request, allowed: tuple[str, ...]) -> str:
    """The request's media type if allowed (a missing one counts as the first), else 415."""
    if "Content-Type" not in request.headers:
        return allowed[0]
    ctype = request.content_type
    if ctype not in allowed:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"content type {ctype!r} is not supported here; use {', '.join(allowed)}",
        )
    return ctype


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read the body, inflating gzip, without ever holding more than ``limit`` bytes of it."""
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _too_large(limit)
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip"):
        raise ApiError(
            415, "unsupported_media_type", f"content encoding {encoding!r} is not supported"
        )
    if encoding == "identity" and declared is not None:
        # the common case: the size is known and within the limit, so one read of exactly
        # that many bytes (aiohttp stops at Content-Length) replaces the chunk loop
        return await request.read()
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding != "identity" else None
    out = bytearray()
    raw = 0
    while True:
        chunk = await request.content.read(_CHUNK)
        if not chunk:
            break
        raw += len(chunk)
        if raw > limit:
            raise _too_large(limit)
        if inflater is None:
            out += chunk
            continue
        try:
            # max_length bounds the inflated size, so a gzip bomb is never expanded in full
            out += inflater.decompress(chunk, limit + 1 - len(out))
            while inflater.unconsumed_tail and len(out) <= limit:
                out += inflater.decompress(inflater.unconsumed_tail, limit + 1 - len(out))
        except zlib.error:
            raise ApiError(400, "bad_request", "the body is not valid gzip") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise _too_large(limit)
    if inflater is not None and not inflater.eof:
        raise ApiError(400, "bad_request", "the gzip body is truncated")
    return bytes(out)


def located(exc: msgspec.ValidationError | msgspec.DecodeError, prefix: str = "") -> Detail:
    """A msgspec error as a Detail naming the offending field (``[2].value``)."""
    text = str(exc)
    path = ""
    at = _AT.search(text)
    if at:
        text, path = text[: at.start()], at.group(1)
    unknown = _UNKNOWN.match(text)
    if unknown:
        path = f"{path}.{unknown.group(1)}"
        text = "unknown field"
    path = (prefix + path).lstrip(".")
    return Detail(path or "(body)", text)


# One JSON token: a string (possibly unterminated), a structural character, or a scalar.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"?|[\[\]{}:,]|[^\s\[\]{}:,"]+', re.S)
# \uD800-\uDFFF escapes not preceded by an escaped backslash
_SURROGATE = re.compile(rb"(?<!\\)(?:\\\\)*\\u[dD]([89abAB]|[c-fC-F])[0-9a-fA-F]{2}")


def locate(body: bytes, *, offset: int | None = None, depth: int | None = None) -> str | None:
    """The path (``alerts[2].labels.team``) of the value at byte ``offset`` of a JSON text,
    or of the first container nested deeper than ``depth``; None when there is none.

    Runs only to explain a refusal, so it may be slow: a token at a time, iteratively (the
    input may be nested far deeper than any recursive parser allows), tolerant of bad JSON.
    """
    # a frame per open container: [is_object, key or index, expecting a key]
    stack: list[list[Any]] = []

    def path() -> str:
        out = ""
        for is_object, where, _ in stack:
            if is_object:
                out += f".{where}" if where is not None else ""
            else:
                out += f"[{where}]"
        return out.lstrip(".")

    for match in _TOKEN.finditer(body):
        token = match.group()
        first = token[:1]
        top = stack[-1] if stack else None
        if offset is not None and match.start() > offset:
            return path() or None
        if first in (b"{", b"["):
            if depth is not None and len(stack) >= depth:
                return path() or "(body)"
            stack.append([first == b"{", None if first == b"{" else 0, first == b"{"])
        elif first in (b"}", b"]"):
            if stack:
                stack.pop()
        elif first == b":":
            if top is not None:
                top[2] = False
        elif first == b",":
            if top is not None and top[0]:
                top[2] = True
            elif top is not None:
                top[1] += 1
        elif top is not None and top[0] and top[2]:
            top[1] = _key(token)
        if offset is not None and match.start() <= offset < match.end():
            return path() or "(body)"
    return None


def _key(token: bytes) -> str:
    try:
        key = json.loads(token)
    except ValueError:
        return token.strip(b'"').decode(errors="replace")
    return key if isinstance(key, str) else str(key)


def unstorable(body: bytes, prefix: str = "") -> Detail | None:
    """Why a JSON text that a decoder refused holds a string no database could store, naming
    the field: invalid UTF-8 bytes or a lone UTF-16 surrogate (msgspec's own messages for
    these, such as "Input data was truncated", name neither the field nor the problem)."""
    try:
        body.decode()
    except UnicodeDecodeError as exc:
        where = locate(body, offset=exc.start) or "(body)"
        return Detail(_prefixed(prefix, where), "is not valid UTF-8")
    escapes = list(_SURROGATE.finditer(body))
    paired = False
    for i, found in enumerate(escapes):
        high = found.group(1).lower() in (b"8", b"9", b"a", b"b")
        if paired:  # the low half of a pair matched before
            paired = False
            continue
        follows = i + 1 < len(escapes) and escapes[i + 1].start() == found.end()
        if high and follows and escapes[i + 1].group(1).lower() in (b"c", b"d", b"e", b"f"):
            paired = True
            continue
        where = locate(body, offset=found.end() - 1) or "(body)"
        return Detail(
            _prefixed(prefix, where), "contains a lone UTF-16 surrogate, which cannot be stored"
        )
    return None


def too_deep(body: bytes, prefix: str = "") -> Detail:
    """The first place a JSON text nests deeper than the storage's limit."""
    where = locate(body, depth=MAX_DEPTH) or "(body)"
    return Detail(_prefixed(prefix, where), TOO_DEEP)


def _prefixed(prefix: str, path: str) -> str:
    if not prefix:
        return path
    return prefix if path == "(body)" else join(prefix, path)


def invalid(problems: list[tuple[str, str]], prefix: str = "") -> ApiError:
    """A 400 naming every problem :func:`value_problems` found."""
    details = [Detail(_prefixed(prefix, path) or "(body)", text) for path, text in problems]
    return ApiError(400, "invalid_body", "the body holds values that cannot be stored", details)


@overload
def decode_json(body: bytes, tp: type[T], *, check: bool = True) -> T: ...
@overload
def decode_json(body: bytes, tp: msgspec.json.Decoder[T], *, check: bool = True) -> T: ...
def decode_json(body: bytes, tp: Any, *, check: bool = True) -> Any:
    """Decode and validate a JSON body into a type (or with a prepared decoder, e.g. for a
    union such as "one object or an array"); 400 with the field's path when invalid.

    With ``check``, every decoded value also passes :func:`value_problems` (NUL, time range,
    depth): the one pass that keeps what PostgreSQL refuses out of the database. Bulk inputs
    with their own column-wise checks (performance logs, the webhook) opt out.
    """
    try:
        if isinstance(tp, msgspec.json.Decoder):
            decoded = tp.decode(body)
        else:
            decoded = msgspec.json.decode(body, type=tp)
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
    if check:
        problems = value_problems(decoded)
        if problems:
            raise invalid(problems)
    return decoded


def parse_query(request: web.Request, tp: type[T]) -> T:
    """Validate query parameters into a Struct (strings converted, unknown names rejected,
    every value storable: no NUL, finite numbers, timestamps in range)."""
    raw: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        if "\x00" in key or any("\x00" in v for v in values):
            raise ApiError(400, "invalid_query", "the query is not valid", [Detail(key, NUL)])
        raw[key] = values if len(values) > 1 else values[0]
    times: frozenset[str] = _time_fields(tp)  # type: ignore[arg-type]  # classes hash
    for name in times & raw.keys():
        try:
            # the lax conversion below would also take "0.5" for a time (Unix seconds);
            # the document promises RFC 3339, so that is all a time parameter takes
            msgspec.convert(raw[name], datetime)
        except msgspec.ValidationError:
            detail = Detail(name, "expected an RFC 3339 timestamp with an offset")
            raise ApiError(400, "invalid_query", "the query is not valid", [detail]) from None
    try:
        query = msgspec.convert(raw, tp, strict=False)
    except msgspec.ValidationError as exc:
        detail = located(exc)
        raise ApiError(400, "invalid_query", "the query is not valid", [detail]) from None
    problems = value_problems(query)
    if problems:
        details = [Detail(path, text) for path, text in problems]
        raise ApiError(400, "invalid_query", "the query is not valid", details)
    return query


@functools.cache
def _time_fields(tp: type) -> frozenset[str]:
    """The (wire) names of a query Struct's timestamp fields."""
    names = set()
    info = msgspec.inspect.type_info(tp)
    assert isinstance(info, msgspec.inspect.StructType)
    for f in info.fields:
        options = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
        for option in options:
            if isinstance(option, msgspec.inspect.Metadata):
                option = option.type
            if isinstance(option, msgspec.inspect.DateTimeType):
                names.add(f.encode_name)
    return frozenset(names)


def parse_path(request: web.Request, tp: type[T]) -> T:
    """Validate the path's parameters into a Struct; 400 ``invalid_path`` naming the one that
    is not valid (an id beyond its column's range is not "not found": it cannot exist)."""
    raw = dict(request.match_info)
    for name, value in raw.items():
        if "\x00" in value:
            raise ApiError(400, "invalid_path", "the path is not valid", [Detail(name, NUL)])
    try:
        return msgspec.convert(raw, tp, strict=False)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_path", "the path is not valid", [located(exc)]) from None


_encoder = msgspec.json.Encoder()


def json_response(obj: Any, status: int = 200) -> web.Response:
    """A JSON response encoded with msgspec."""
    return web.Response(body=_encoder.encode(obj), status=status, content_type="application/json")
