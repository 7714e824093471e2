"""The /api/v1 route table: scopes and types of each route, and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from exporter.web.errors import ErrorEnvelope

Scope = Literal["read", "write", "ack", "admin"]
RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    """One HTTP route with what it needs and takes: the single source for routing and docs."""

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


class Api:
    """Registers routes on the app and remembers their scopes and types."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self._scopes: dict[AbstractRoute, Scope | None] = {}

    def add(self, app: web.Application, route: Route) -> None:
        """Add a route to the app's router."""
        registered = app.router.add_route(route.method, route.path, route.handler)
        self.routes.append(route)
        self._scopes[registered] = route.scope

    def scope_of(self, route: AbstractRoute) -> tuple[bool, Scope | None]:
        """(known, scope) of a matched route; unknown routes are not part of the API table."""
        if route in self._scopes:
            return True, self._scopes[route]
        return False, None

    def openapi(self) -> dict[str, Any]:
        """An OpenAPI 3.1 document generated from the same types that validate requests."""
        types: list[Any] = [ErrorEnvelope]
        for r in self.routes:
            types += [t for t in (r.body, r.response, r.query) if t is not None]
        schemas, components = msgspec.json.schema_components(
            types, ref_template="#/components/schemas/{name}"
        )
        refs = dict(zip([id(t) for t in types], schemas, strict=True))
        paths: dict[str, dict[str, Any]] = {}
        error_ref = {"$ref": "#/components/schemas/ErrorEnvelope"}
        for r in self.routes:
            op: dict[str, Any] = {
                "summary": r.summary,
                "operationId": f"{r.method.lower()}_{r.handler.__name__}",
                "tags": list(r.tags),
                "responses": {},
            }
            if r.scope is not None:
                op["security"] = [{"bearer": [r.scope]}]
            params = [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in _path_params(r.path)
            ]
            if r.query is not None:
                props = components[r.query.__name__].get("properties", {})
                required = set(components[r.query.__name__].get("required", []))
                params += [
                    {"name": name, "in": "query", "required": name in required, "schema": schema}
                    for name, schema in props.items()
                ]
            if params:
                op["parameters"] = params
            if r.body is not None:
                op["requestBody"] = {
                    "required": True,
                    "content": {ct: {"schema": refs[id(r.body)]} for ct in r.content_types},
                }
            ok: dict[str, Any] = {"description": "success"}
            if r.response is not None:
                ok["content"] = {"application/json": {"schema": refs[id(r.response)]}}
            op["responses"][str(r.status)] = ok
            codes = {400: "invalid request", 503: "storage unavailable"}
            if r.scope is not None:
                codes |= {401: "missing or invalid token", 403: "token lacks the scope"}
            codes |= r.responses
            for code, text in sorted(codes.items()):
                op["responses"][str(code)] = {
                    "description": text,
                    "content": {"application/json": {"schema": error_ref}},
                }
            paths.setdefault(r.path, {})[r.method.lower()] = op
        return {
            "openapi": "3.1.0",
            "info": {"title": "monitoring-exporter", "version": "1"},
            "paths": paths,
            "components": {
                "schemas": components,
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
        }


def _path_params(path: str) -> list[str]:
    names = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            names.append(part[1:-1].split(":")[0])
    return names


API = web.AppKey("api", Api)
