"""Which web pages may use the browser routes (streams, tickets): the Origin check and CORS.

A browser names the page's origin in ``Origin`` (on every WebSocket handshake and every
cross-origin fetch). On a browser route (``Route.browser`` or ``Route.ticket``), a request
whose Origin is neither the service's own nor in ``web.allowed_origins`` is answered 403
before any upgrade; an allowed origin gets CORS headers, and its preflight (OPTIONS) is
answered here. Requests without ``Origin`` (curl, services) are not browsers' and pass.
The CORS headers are added as the response is prepared (``cors_headers``), so a stream the
handler starts itself (Server-Sent Events) carries them as well as an ordinary answer.
"""

from __future__ import annotations

from aiohttp import hdrs, web

from exporter.features.core import CONFIG
from exporter.web.api import API
from exporter.web.errors import ApiError, Handler, error_response

_ALLOW_HEADERS = "Authorization, Content-Type, Idempotency-Key"
_PREFLIGHT_MAX_AGE = "600"
#: the allowed browser origin a request came from, for its response's CORS headers
CORS_ORIGIN = web.RequestKey("cors_origin", str)


def origin_allowed(request: web.Request, origin: str) -> bool:
    """Whether a page from ``origin`` may use this request's route."""
    origin = origin.lower()
    own = f"{request.scheme}://{request.host}".lower()
    return origin == own or origin in request.app[CONFIG].web.allowed_origins


def check_origin(request: web.Request) -> str | None:
    """The request's Origin if a browser sent one (and it is allowed), None if none; 403 if
    the page's origin may not use the route."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return None
    if not origin_allowed(request, origin):
        raise ApiError(403, "forbidden", f"the origin {origin[:200]!r} is not allowed")
    return origin


def _cors(headers: dict[str, str] | None, origin: str) -> dict[str, str]:
    out = dict(headers or {})
    out[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
    out[hdrs.VARY] = "Origin"
    out[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = "WWW-Authenticate, Retry-After"
    return out


@web.middleware
async def origin_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse browser routes to other origins; answer preflights and add CORS headers."""
    if request.path not in request.app[API].browser_paths:
        return await handler(request)
    try:
        origin = check_origin(request)
    except ApiError as exc:
        return error_response(exc)
    if origin is None:
        return await handler(request)
    if (
        request.method == hdrs.METH_OPTIONS
        and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
    ):
        allowed = sorted(
            r.method
            for r in request.app[API].routes
            if r.path == request.path and (r.browser or r.ticket)
        )
        return web.Response(
            status=204,
            headers=_cors(
                {
                    hdrs.ACCESS_CONTROL_ALLOW_METHODS: ", ".join(allowed),
                    hdrs.ACCESS_CONTROL_ALLOW_HEADERS: _ALLOW_HEADERS,
                    hdrs.ACCESS_CONTROL_MAX_AGE: _PREFLIGHT_MAX_AGE,
                },
                origin,
            ),
        )
    request[CORS_ORIGIN] = origin
    return await handler(request)


async def cors_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: CORS headers on every answer to an allowed origin, before
    they are sent (a streaming handler sends them before it returns)."""
    origin = request.get(CORS_ORIGIN)
    # a WebSocket's handshake needs no CORS (browsers check its Origin themselves)
    if origin is not None and not isinstance(response, web.WebSocketResponse):
        response.headers.update(_cors(None, origin))
