"""Request bodies and queries: size limits, content types, gzip, and strict decoding."""

from __future__ import annotations

import re
import zlib
from typing import Any, TypeVar, overload

import msgspec
from aiohttp import web

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


@overload
def decode_json(body: bytes, tp: type[T]) -> T: ...
@overload
def decode_json(body: bytes, tp: msgspec.json.Decoder[T]) -> T: ...
def decode_json(body: bytes, tp: Any) -> Any:
    """Decode and validate a JSON body into a type (or with a prepared decoder, e.g. for a
    union such as "one object or an array"); 400 with the field's path when invalid."""
    try:
        if isinstance(tp, msgspec.json.Decoder):
            return tp.decode(body)
        return msgspec.json.decode(body, type=tp)
    except msgspec.ValidationError as exc:
        raise ApiError(400, "invalid_body", "the body is not valid", [located(exc)]) from None
    except msgspec.DecodeError as exc:
        raise ApiError(
            400, "malformed_json", "the body is not well-formed JSON", [Detail("(body)", str(exc))]
        ) from None


def parse_query(request: web.Request, tp: type[T]) -> T:
    """Validate query parameters into a Struct (strings converted, unknown names rejected)."""
    raw: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        raw[key] = values if len(values) > 1 else values[0]
    try:
        return msgspec.convert(raw, tp, strict=False)
    except msgspec.ValidationError as exc:
        detail = located(exc)
        raise ApiError(400, "invalid_query", "the query is not valid", [detail]) from None


_encoder = msgspec.json.Encoder()


def json_response(obj: Any, status: int = 200) -> web.Response:
    """A JSON response encoded with msgspec."""
    return web.Response(body=_encoder.encode(obj), status=status, content_type="application/json")
