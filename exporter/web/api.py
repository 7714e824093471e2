"""The route table of the API (/api/v1, and OTLP's /v1/traces): scopes and types of each
route, and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from exporter.web.errors import ErrorEnvelope

#: ``any``: every valid token, whatever its scopes (a person's own saved views)
Scope = Literal["read", "write", "ack", "admin", "any"]
RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One HTTP route with what it needs and takes: the single source for routing and docs.

    ``body``, ``query`` and ``path_params`` are the types that validate the request,
    ``response`` the type of a success (a tuple of types when the shape depends on the
    request: msgspec cannot describe a union of untagged Structs), ``messages`` the first
    message a WebSocket client sends.
    """

    method: str
    path: str
    handler: RouteHandler
    summary: str
    scope: Scope | None
    body: Any = None
    query: Any = None
    response: Any = None
    status: int = 200
    content_types: tuple[str, ...] = ("application/json",)
    tags: tuple[str, ...] = ()
    responses: dict[int, str] = field(default_factory=dict)
    path_params: Any = None
    messages: Any = None
    #: takes an Idempotency-Key header (a retry with the key gets the first outcome)
    idempotent: bool = False
    #: more success statuses with the same body as ``status`` (e.g. 200 beside 201), and when
    also: dict[int, str] = field(default_factory=dict)
    #: the path as the router matches it, when a parameter must not take a sibling route's
    #: literal segment (``{id:(?!resolve$)[^/]+}``); the document shows ``path``
    router_path: str | None = None
    #: further request and success media types with their own (raw) schemas, for bodies
    #: that are not JSON (OTLP's protobuf)
    other_bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    other_responses: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: the OpenAPI security of a route without a scope that still reads credentials (the
    #: console's sign-in and session routes)
    security: list[dict[str, list[str]]] | None = None
    #: for web pages: refuses an ``Origin`` that is neither the service's own nor in
    #: ``web.allowed_origins``, and gives allowed ones CORS
    browser: bool = False
    #: a stream a web page opens: takes ``?ticket=`` (POST /api/v1/stream/tickets) in lieu of
    #: a bearer token (implies ``browser``; never on the tickets route, or a ticket would buy
    #: the next one for ever)
    ticket: bool = False


class Api:
    """Registers routes on the app and remembers their scopes and types."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self._scopes: dict[AbstractRoute, Scope | None] = {}
        self._tickets: set[AbstractRoute] = set()
        #: the paths of browser routes (their OPTIONS requests match no route)
        self.browser_paths: set[str] = set()

    def add(self, app: web.Application, route: Route) -> None:
        """Add a route to the app's router."""
        registered = app.router.add_route(
            route.method, route.router_path or route.path, route.handler
        )
        self.routes.append(route)
        self._scopes[registered] = route.scope
        if route.browser or route.ticket:
            self.browser_paths.add(route.path)
        if route.ticket:
            self._tickets.add(registered)

    def takes_ticket(self, route: AbstractRoute) -> bool:
        """Whether a matched route accepts a stream ticket instead of a bearer token."""
        return route in self._tickets

    def scope_of(self, route: AbstractRoute) -> tuple[bool, Scope | None]:
        """(known, scope) of a matched route; unknown routes are not part of the API table."""
        if route in self._scopes:
            return True, self._scopes[route]
        return False, None

    def openapi(self) -> dict[str, Any]:
        """An OpenAPI 3.1 document generated from the same types that validate requests."""
        types: list[Any] = [ErrorEnvelope]
        for r in self.routes:
            types += [t for t in (r.body, r.query, r.path_params, r.messages) if t is not None]
            types += _alternatives(r.response)
        schemas, components = msgspec.json.schema_components(
            types, ref_template="#/components/schemas/{name}"
        )
        refs = dict(zip([id(t) for t in types], schemas, strict=True))
        paths: dict[str, dict[str, Any]] = {}
        for r in self.routes:
            op: dict[str, Any] = {
                "summary": r.summary,
                "operationId": f"{r.method.lower()}_{r.handler.__name__}",
                "tags": list(r.tags),
                "responses": {},
            }
            if r.handler.__doc__:
                op["description"] = r.handler.__doc__.strip()
            if r.scope is not None:
                # (the console's session cookie stands for the token it was made from: see
                # the "session" scheme)
                op["security"] = [{"bearer": [r.scope]}]
            elif r.security is not None:
                op["security"] = r.security
            params = _parameters(components, r.path_params, "path")
            params += _parameters(components, r.query, "query")
            if r.idempotent:
                params.append(IDEMPOTENCY_PARAMETER)
            if params:
                op["parameters"] = params
            if r.body is not None:
                op["requestBody"] = {
                    "required": True,
                    "content": {ct: {"schema": refs[id(r.body)]} for ct in r.content_types}
                    | {ct: {"schema": schema} for ct, schema in r.other_bodies.items()},
                }
            if r.messages is not None:
                # OpenAPI has no words for a WebSocket: the subscribe message as an extension
                op["x-websocket-client-message"] = refs[id(r.messages)]
            ok: dict[str, Any] = {"description": "success"}
            shapes = [refs[id(t)] for t in _alternatives(r.response)]
            if shapes:
                schema = shapes[0] if len(shapes) == 1 else {"anyOf": shapes}
                ok["content"] = {"application/json": {"schema": schema}} | {
                    ct: {"schema": other} for ct, other in r.other_responses.items()
                }
            op["responses"][str(r.status)] = ok
            for code, text in r.also.items():
                op["responses"][str(code)] = {**ok, "description": text}
            for code, text in sorted(_errors(r).items()):
                op["responses"][str(code)] = _error_response(code, text)
            paths.setdefault(r.path, {})[r.method.lower()] = op
        return {
            "openapi": "3.1.0",
            "info": {"title": "monitoring-exporter", "version": "1"},
            "paths": paths,
            "components": {
                "schemas": components,
                "securitySchemes": {
                    "bearer": {"type": "http", "scheme": "bearer"},
                    "session": {
                        "type": "apiKey",
                        "in": "cookie",
                        "name": "mexp_session",
                        "description": "the console's session (POST /api/v1/session), "
                        "accepted by every route in place of the token it was made from; a "
                        "write with it needs the X-CSRF-Token header",
                    },
                },
            },
        }


IDEMPOTENCY_PARAMETER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A retry with the same key gets the first outcome back and stores nothing "
    "twice (keys are kept at least 24 h, per token).",
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
}


def _alternatives(response: Any) -> list[Any]:
    if response is None:
        return []
    return list(response) if isinstance(response, tuple) else [response]


def _parameters(components: dict[str, Any], tp: Any, where: str) -> list[dict[str, Any]]:
    """The fields of a path or query Struct as OpenAPI parameters, with their constraints."""
    if tp is None:
        return []
    component = components[tp.__name__]
    required = set(component.get("required", []))
    return [
        {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
            "schema": schema,
        }
        for name, schema in component.get("properties", {}).items()
    ]


def _errors(r: Route) -> dict[int, str]:
    """Every error status a route can answer, and why."""
    codes = {400: "invalid request: the details name the field", 503: "storage unavailable"}
    if r.scope is not None:
        codes |= {401: "missing or invalid token", 403: "the token lacks the scope"}
    if r.path_params is not None:
        codes[404] = "no such resource"
    if r.body is not None:
        codes |= {413: "the body exceeds its limit", 415: "unsupported content type or encoding"}
    if r.idempotent:
        codes[422] = "the Idempotency-Key was used for another request"
    if r.browser or r.ticket:
        codes[403] = "the token lacks the scope, or the Origin is not allowed"
    if r.ticket:
        codes[401] = "missing or invalid token, or an unknown, used or expired ticket"
    return codes | r.responses


# headers an error response always carries
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": "Bearer challenge"},
    503: {"Retry-After": "seconds to wait before retrying"},
}


def _error_response(code: int, text: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
    }
    headers = _ERROR_HEADERS.get(code)
    if headers:
        out["headers"] = {
            name: {"description": about, "required": True, "schema": {"type": "string"}}
            for name, about in headers.items()
        }
    return out


API = web.AppKey("api", Api)
