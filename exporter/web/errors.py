"""The JSON error shape of the contract, and the middleware that guarantees it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus

import msgspec
from aiohttp import web

from exporter.storage import StorageUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Detail(msgspec.Struct, frozen=True):
    """Where in the input a problem is, and what it is."""

    path: str
    message: str


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message", "details"}}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Sequence[Detail] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details)
        self.headers = headers or {}


class ErrorBody(msgspec.Struct, frozen=True):
    """The body of every error response."""

    code: str
    message: str
    details: list[Detail] = []


class ErrorEnvelope(msgspec.Struct, frozen=True):
    """``{"error": {...}}``."""

    error: ErrorBody


_encoder = msgspec.json.Encoder()

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}


def error_response(error: ApiError) -> web.Response:
    """Render an ApiError."""
    return web.Response(
        status=error.status,
        body=encode_error(error),
        content_type="application/json",
        headers=error.headers,
    )


def encode_error(error: ApiError) -> bytes:
    """The JSON of an error; text quoted from the request that is not valid UTF-8 (a lone
    surrogate in a message) is escaped rather than failing the answer."""
    body = ErrorEnvelope(ErrorBody(error.code, error.message, error.details))
    try:
        return _encoder.encode(body)
    except UnicodeEncodeError:
        clean = ErrorBody(
            error.code,
            _printable(error.message),
            [Detail(_printable(d.path), _printable(d.message)) for d in error.details],
        )
        return _encoder.encode(ErrorEnvelope(clean))


def _printable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every failure into the contract's JSON error; never leak a traceback."""
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc)
    except StorageUnavailable as exc:
        log.warning("storage unavailable", extra={"path": request.path, "error": str(exc)})
        return error_response(
            ApiError(
                503,
                "storage_unavailable",
                "storage is unavailable, retry later",
                headers={"Retry-After": str(exc.retry_after)},
            )
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _CODES.get(exc.status, "http_error")
        message = exc.reason or HTTPStatus(exc.status).phrase
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return error_response(ApiError(exc.status, code, message, headers=headers))
    except Exception:
        log.exception("unhandled error", extra={"path": request.path, "method": request.method})
        return error_response(ApiError(500, "internal", "internal error"))
