"""The OpenAPI document: valid 3.1, and it describes every /api/v1 route the app serves."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
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
        and route.resource.canonical.startswith(("/api/v1/", "/v1/traces"))
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


FUZZ: dict[str, Any] = {
    "auth": {
        "tokens": [
            {"name": scope, "token": f"{scope}-token", "scopes": [scope]}
            for scope in ("read", "write", "ack", "admin")
        ]
    },
    "host": {"enabled": False},
}


@pytest.mark.timeout(180)
async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    make_client: MakeClient, tmp_path: Path
) -> None:
    """schemathesis (every check but positive_data_acceptance, which cross-field rules such
    as valid_records <= total_records cannot pass) over every operation, seed fixed."""
    client = await make_client(FUZZ)
    schema = str(client.make_url("/api/v1/openapi.json"))
    doc = await (await client.get("/api/v1/openapi.json")).json()
    operations = sum(len(ops) for ops in doc["paths"].values())
    # its own process, so the server keeps this test's event loop to itself
    run = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("st")), "run", schema,
        "--header", "Authorization: Bearer admin-token",
        "--seed", "1", "--max-time", "45", "--workers", "1", "--request-timeout", "10",
        "--exclude-checks", "positive_data_acceptance",
        cwd=tmp_path, env={**os.environ, "NO_COLOR": "1"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(run.communicate(), timeout=150)
    report = out.decode(errors="replace")
    assert run.returncode == 0, report[-12_000:]
    # the run really tested: every operation, and thousands of cases
    assert f"{operations} selected / {operations} total" in report, report[-3000:]
    generated = int(re.search(r"(\d+) generated", report).group(1))  # type: ignore[union-attr]
    assert generated > 1000, report[-3000:]


def test_the_document_states_the_constraints_the_handlers_enforce() -> None:
    doc = create_app(make_config({}), dsn="postgresql://x@127.0.0.1:1/x")[API].openapi()
    paths, schemas = doc["paths"], doc["components"]["schemas"]

    def params(path: str, method: str) -> dict[str, Any]:
        return {p["name"]: p for p in paths[path][method].get("parameters", [])}

    alert_id = params("/api/v1/alerts/{id}", "get")["id"]
    assert alert_id["in"] == "path" and alert_id["required"]
    assert alert_id["schema"] == {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
    threshold = params("/api/v1/thresholds/{service}/{metric_type}", "put")
    assert threshold["metric_type"]["schema"]["pattern"] == "^[a-zA-Z_][a-zA-Z0-9_]*$"
    assert threshold["service"]["schema"]["maxLength"] == 200
    removal = params("/api/v1/thresholds/{service}/{metric_type}", "delete")["expect_version"]
    assert removal["schema"]["anyOf"][0]["maximum"] == 2**31 - 1
    assert schemas["ThresholdIn"]["properties"]["expect_version"]["anyOf"][0]["maximum"] == (
        2**31 - 1
    )
    # every free string says it holds no NUL; every time says its range
    assert schemas["Acknowledge"]["properties"]["by"]["pattern"] == "^[^\\u0000]*$"
    since = params("/api/v1/alerts", "get")["since"]["schema"]["anyOf"][0]
    assert since["format"] == "date-time" and "9999-12-30" in since["description"]
    # batches answer a list: both shapes are described, with the real status
    push = paths["/api/v1/health-metrics"]["post"]["responses"]
    assert [s["$ref"].rsplit("/", 1)[1] for s in
            push["201"]["content"]["application/json"]["schema"]["anyOf"]] == [
        "HealthMetric", "HealthMetricList"]  # fmt: skip
    assert schemas["HealthMetricIn"]["description"].count("64 levels") == 1
    # errors: the envelope everywhere, and the statuses each route can answer
    for path, ops in paths.items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert {"400", "401", "403", "503"} <= codes, (method, path)
            if "requestBody" in op:
                assert {"413", "415"} <= codes, (method, path)
            if "{" in path:
                assert "404" in codes, (method, path)
            retry = op["responses"]["503"]["headers"]["Retry-After"]
            assert retry["required"], (method, path)
    stream = paths["/api/v1/stream"]["get"]
    assert "requestBody" not in stream
    assert stream["x-websocket-client-message"]["$ref"].endswith("/Subscribe")
