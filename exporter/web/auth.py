"""Bearer tokens with scopes, compared in constant time and never logged."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from exporter.config.schema import Auth, Config
from exporter.features.core import CONFIG
from exporter.features.tickets import TICKETS
from exporter.web.api import API
from exporter.web.errors import ApiError, Handler

_AUTH_KEY: web.AppKey[Tokens] = web.AppKey("auth_tokens")


@dataclass(frozen=True)
class Principal:
    """Who made a request: the token's name and its scopes."""

    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        """Whether this principal holds ``scope`` (admin holds every scope; ``any`` asks only
        for a valid token)."""
        return scope == "any" or scope in self.scopes or "admin" in self.scopes


PRINCIPAL = web.RequestKey("principal", Principal)


class Tokens:
    """The configured tokens, ready for constant-time lookup."""

    def __init__(self, auth: Auth) -> None:
        self.disabled = auth.disabled
        self._tokens = [
            (t.token.encode(), Principal(t.name, frozenset(t.scopes)))
            for t in auth.tokens
            if t.token
        ]

    def find(self, presented: str) -> Principal | None:
        """The principal of a presented token; every configured token is compared."""
        found = None
        candidate = presented.encode()
        for secret, principal in self._tokens:
            if hmac.compare_digest(secret, candidate):
                found = principal
        return found

    def named(self, name: str) -> Principal | None:
        """The principal of the configured tokens called ``name`` (a session's token; two
        tokens may share a name while one is rotated): their scopes together."""
        held = [p.scopes for _, p in self._tokens if p.name == name]
        return Principal(name, frozenset().union(*held)) if held else None


def tokens_of(app: web.Application) -> Tokens:
    """The app's token table."""
    return app[_AUTH_KEY]


#: the principal of a request that holds no Authorization header, from its session cookie
#: (web.sessions); None when it holds none
CookieAuth = Callable[[web.Request], Awaitable[Principal | None]]
COOKIE_AUTH: web.AppKey[CookieAuth] = web.AppKey("cookie_auth")


async def _principal(request: web.Request, tokens: Tokens) -> Principal:
    """A bearer token wins; else the session cookie; else a 401."""
    cookie = request.app.get(COOKIE_AUTH)
    if cookie is not None and "Authorization" not in request.headers:
        found = await cookie(request)
        if found is not None:
            return found
    return authenticate(request, tokens)


def _unauthorized(message: str, error: str | None = None) -> ApiError:
    challenge = 'Bearer realm="monitoring-exporter"'
    if error:
        challenge += f', error="{error}"'
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def authenticate(request: web.Request, tokens: Tokens) -> Principal:
    """The principal behind a request's bearer token, or a 401."""
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if not header:
        raise _unauthorized("a bearer token is required")
    if scheme.lower() != "bearer" or not presented.strip():
        raise _unauthorized("use Authorization: Bearer <token>", "invalid_request")
    principal = tokens.find(presented.strip())
    if principal is None:
        raise _unauthorized("the token is not valid", "invalid_token")
    return principal


async def redeem_ticket(request: web.Request) -> Principal:
    """The principal behind the request's ``?ticket=``, consuming the ticket, or a 401.

    For routes a web page opens (WebSocket, EventSource), where a browser cannot set an
    Authorization header; the ticket came from POST /api/v1/stream/tickets.
    """
    holder = await request.app[TICKETS].redeem(request.query.get("ticket", ""))
    if holder is None:
        raise _unauthorized("the ticket is unknown, used or expired", "invalid_token")
    return Principal(holder.token_name, frozenset(holder.scopes))


def setup(app: web.Application, config: Config) -> None:
    """Keep the token table on the app."""
    app[_AUTH_KEY] = Tokens(config.auth)


ANONYMOUS = Principal("anonymous", frozenset({"admin"}))


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the scope a route needs; routes outside the API table need none."""
    app = request.app
    known, scope = app[API].scope_of(request.match_info.route)
    if request.path == "/metrics" and app[CONFIG].web.metrics_auth:
        known, scope = True, "read"
    if known and scope is not None:
        tokens = app[_AUTH_KEY]
        if tokens.disabled:
            principal = ANONYMOUS
        elif "ticket" in request.query and app[API].takes_ticket(request.match_info.route):
            principal = await redeem_ticket(request)
        else:
            principal = await _principal(request, tokens)
        if not principal.allows(scope):
            raise ApiError(403, "forbidden", f"the token {principal.name!r} lacks scope {scope!r}")
        request[PRINCIPAL] = principal
    return await handler(request)
