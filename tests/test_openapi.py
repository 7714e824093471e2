"""The OpenAPI document: valid 3.1, and it describes every /api/v1 route the app serves."""

from __future__ import annotations

from openapi_spec_validator import validate

from exporter.web.api import API
from exporter.web.app import create_app
from tests.conftest import MakeClient, make_config


async def test_openapi_is_valid_and_complete(make_client: MakeClient) -> None:
    client = await make_client()
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    validate(doc)
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
        and route.resource.canonical.startswith("/api/v1/")
        and route.method != "HEAD"
        and route.resource.canonical != "/api/v1/openapi.json"
    }
    described = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert served == described
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["security"], f"{method} {path} has no scope"
            assert "401" in op["responses"], f"{method} {path}"


def test_request_bodies_are_the_validating_types() -> None:
    doc = create_app(make_config({}), dsn="postgresql://x@127.0.0.1:1/x")[API].openapi()
    webhook = doc["paths"]["/api/v1/alertmanager"]["post"]["requestBody"]
    assert webhook["content"]["application/json"]["schema"]["$ref"].endswith("/Notification")
    push = doc["components"]["schemas"]["HealthMetricIn"]
    assert push["additionalProperties"] is False
    assert {"service", "metric_type", "value"} <= set(push["required"])
