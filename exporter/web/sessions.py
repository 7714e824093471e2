"""Console sessions: a pasted token becomes an HttpOnly cookie, stored (hashed) in PostgreSQL so
every replica honours it; writes made with the cookie carry an anti-forgery token."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
from aiohttp import web

from exporter.features.core import CONFIG, DATABASE
from exporter.storage import sessions as storage
from exporter.web.api import API, Route
from exporter.web.auth import ANONYMOUS, COOKIE_AUTH, Principal, authenticate, tokens_of
from exporter.web.errors import ApiError
from exporter.web.payload import decode_json, json_response, media_type, read_body

COOKIE = "mexp_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SCOPES = ("read", "write", "ack", "admin")
# the fixed UIDs of the dashboards shipped in grafana/dashboards (tests check they exist)
GRAFANA_DASHBOARDS = {
    "Overview": "monitoring-overview",
    "Service health": "monitoring-service-health",
    "Data quality": "monitoring-data-quality",
    "Alerts": "monitoring-alerts",
    "Performance": "monitoring-performance",
}
_ID_LENGTH = 43  # secrets.token_urlsafe(32)


class SignIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``POST /api/v1/session``: the token to sign in with (never stored)."""

    token: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class GrafanaLink(msgspec.Struct, frozen=True):
    """One shipped Grafana dashboard."""

    title: str
    uid: str
    url: str | None


class Session(msgspec.Struct, frozen=True):
    """Who the page acts for, and what it needs to: the anti-forgery token to send in
    ``X-CSRF-Token`` with every write (null with a bearer token or without auth), when the
    session ends, and the Grafana links."""

    name: str
    scopes: list[str]
    csrf_token: str | None
    expires_at: datetime | None
    auth_disabled: bool
    grafana: list[GrafanaLink]
    #: the live feed takes a short-lived ticket (POST /api/v1/stream/tickets) rather than
    #: the cookie
    stream_tickets: bool = False


SESSION: web.RequestKey[dict[str, Any]] = web.RequestKey("console_session", dict)


def _hash(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode()).digest()


def _cookie(value: str, max_age: int, secure: bool) -> str:
    flags = f"; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict"
    return f"{COOKIE}={value}{flags}{'; Secure' if secure else ''}"


CHALLENGE = 'Bearer realm="monitoring-exporter"'


def _unauthorized(code: str, message: str, **headers: str) -> ApiError:
    return ApiError(401, code, message, headers={"WWW-Authenticate": CHALLENGE, **headers})


def _expired(request: web.Request) -> ApiError:
    return _unauthorized(
        "session_invalid",
        "the session has expired or is not valid: sign in again",
        **{"Set-Cookie": _cookie("", 0, request.secure)},
    )


def same_origin(request: web.Request) -> bool:
    """Whether the request's ``Origin`` (when it has one) is this service itself."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == request.host.lower() and origin != "null"


def _forbidden(message: str) -> ApiError:
    return ApiError(403, "csrf_failed", message)


async def from_cookie(request: web.Request) -> Principal | None:
    """The principal of a request's session cookie (None without one): 401 when the session
    is unknown or over, 403 for a foreign Origin or a write without the anti-forgery token."""
    session_id = request.cookies.get(COOKIE)
    if session_id is None:
        return None
    row = None
    if len(session_id) == _ID_LENGTH:
        row = await storage.find(request.app[DATABASE], _hash(session_id))
    # a token removed from the configuration ends its sessions, and scopes taken away apply
    current = tokens_of(request.app).named(row["token_name"]) if row is not None else None
    if row is None or current is None:
        raise _expired(request)
    if not same_origin(request):
        raise _forbidden("a cross-site request with the session cookie is refused")
    if request.method not in SAFE_METHODS:
        presented = request.headers.get(CSRF_HEADER, "").encode()
        if not hmac.compare_digest(presented, row["csrf_secret"].encode()):
            raise _forbidden(f"a write with the session cookie needs the {CSRF_HEADER} header")
    request[SESSION] = dict(row)
    # what both the session and the token allow now (admin implies every scope)
    signed = Principal(current.name, frozenset(row["scopes"]))
    held = {s for s in SCOPES if signed.allows(s) and current.allows(s)}
    return Principal(current.name, frozenset(held))


def _out(request: web.Request, principal: Principal, row: Any | None) -> Session:
    config = request.app[CONFIG]
    base = config.console.grafana_url
    grafana = [
        GrafanaLink(title, uid, f"{base.rstrip('/')}/d/{uid}" if base else None)
        for title, uid in GRAFANA_DASHBOARDS.items()
    ]
    return Session(
        name=principal.name,
        scopes=sorted(principal.scopes),
        csrf_token=row["csrf_secret"] if row is not None else None,
        expires_at=row["expires_at"] if row is not None else None,
        auth_disabled=config.auth.disabled,
        grafana=grafana,
        stream_tickets=any(r.path == "/api/v1/stream/tickets" for r in request.app[API].routes),
    )


async def sign_in(request: web.Request) -> web.Response:
    """``POST /api/v1/session``: exchange a token for a session cookie (HttpOnly,
    SameSite=Strict, Secure under TLS); 401 for an unknown token."""
    media_type(request, ("application/json",))
    body = decode_json(await read_body(request, request.app[CONFIG].web.max_body_bytes), SignIn)
    if not same_origin(request):
        raise _forbidden("sign-in from another site is refused")
    tokens = tokens_of(request.app)
    if tokens.disabled:
        return json_response(_out(request, ANONYMOUS, None))
    principal = tokens.find(body.token)
    if principal is None:
        raise _unauthorized("unauthorized", "the token is not valid")
    session_id, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    ttl = request.app[CONFIG].console.session_ttl.seconds
    row = await storage.create(
        request.app[DATABASE], _hash(session_id), principal.name, sorted(principal.scopes), csrf,
        ttl,
    )  # fmt: skip
    response = json_response(_out(request, principal, row), status=201)
    response.headers["Set-Cookie"] = _cookie(session_id, int(ttl), request.secure)
    response.headers["Cache-Control"] = "no-store"
    return response


async def current_session(request: web.Request) -> web.Response:
    """``GET /api/v1/session``: who the cookie (or bearer token) signs in, with the
    anti-forgery token; 401 when no one is signed in."""
    tokens = tokens_of(request.app)
    if tokens.disabled:
        return json_response(_out(request, ANONYMOUS, None))
    # the cookie, when the request holds one, is what this route describes
    principal = await from_cookie(request)
    if principal is None:
        if "Authorization" not in request.headers:
            raise _unauthorized("unauthorized", "sign in: no session cookie or bearer token")
        principal = authenticate(request, tokens)
    response = json_response(_out(request, principal, request.get(SESSION)))
    response.headers["Cache-Control"] = "no-store"
    return response


async def sign_out(request: web.Request) -> web.Response:
    """``DELETE /api/v1/session``: end the cookie's session (it is deleted everywhere)."""
    principal = await from_cookie(request)
    if principal is None:
        raise _unauthorized("unauthorized", "no session cookie to sign out")
    await storage.delete(request.app[DATABASE], _hash(request.cookies[COOKIE]))
    response = web.Response(status=204)
    response.headers["Set-Cookie"] = _cookie("", 0, request.secure)
    return response


def setup(app: web.Application) -> None:
    """Register the session routes and let the auth middleware accept the cookie."""
    app[COOKIE_AUTH] = from_cookie
    api, tags = app[API], ("console",)
    signed_in: list[dict[str, list[str]]] = [{"session": []}, {"bearer": []}]
    for route in (
        Route("POST", "/api/v1/session", sign_in, "Sign in to the console with a token", None,
              body=SignIn, response=Session, status=201, tags=tags, security=[{}],
              also={200: "authentication is disabled: no cookie is needed"},
              responses={401: "the token is not valid", 403: "sign-in from another site"}),
        Route("GET", "/api/v1/session", current_session, "Who is signed in", None,
              response=Session, tags=tags, security=signed_in,
              responses={401: "no one is signed in", 403: "the cookie from another site"}),
        Route("DELETE", "/api/v1/session", sign_out, "Sign out of the console", None,
              status=204, tags=tags, security=signed_in,
              responses={401: "no session", 403: "without the anti-forgery token"}),
    ):  # fmt: skip
        api.add(app, route)
