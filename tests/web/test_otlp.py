"""POST /v1/traces: the official OpenTelemetry SDK and exporters send spans to the running
service over protobuf and JSON; the rows appear with the mapping; bad input is refused."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from opentelemetry.exporter.otlp.json.http.trace_exporter import (
    OTLPSpanExporter as JsonExporter,
)
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as ProtobufExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.conftest import MakeClient

TOKENS: dict[str, Any] = {
    "auth": {
        "tokens": [
            {"name": "shop", "token": "write-token", "scopes": ["write"]},
            {"name": "grafana", "token": "read-token", "scopes": ["read"]},
        ]
    }
}
WRITE = {"Authorization": "Bearer write-token"}
PROTOBUF = {**WRITE, "Content-Type": "application/x-protobuf"}
JSON_TYPE = {**WRITE, "Content-Type": "application/json"}
ROWS = """
SELECT operation_type, operation_name, duration_ms, status, error_message, user_id,
       request_details, recorded_at
FROM monitoring.system_performance_logs ORDER BY operation_name
"""


def made_spans() -> list[ReadableSpan]:
    """A server span with a child that fails, made by the real SDK."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("checkout")
    with tracer.start_as_current_span(
        "GET /orders",
        kind=SpanKind.SERVER,
        attributes={"enduser.id": "u-42", "http.status_code": 200, "tags": ["a", "b"]},
    ):
        with tracer.start_as_current_span(
            "sync orders", attributes={"operation.type": "data_sync", "rows": 3}
        ) as child:
            time.sleep(0.002)
            child.set_status(Status(StatusCode.ERROR, "warehouse timed out"))
    provider.shutdown()
    return list(memory.get_finished_spans())


async def stored(db: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = [dict(r) for r in await db.fetch(ROWS)]
    for row in rows:
        row["request_details"] = json.loads(row["request_details"])
    return rows


def check_mapping(rows: list[dict[str, Any]], spans: list[ReadableSpan]) -> None:
    by_name = {s.name: s for s in spans}
    assert [r["operation_name"] for r in rows] == ["GET /orders", "sync orders"]
    server, child = rows
    assert server["operation_type"] == "server"  # the span kind
    assert child["operation_type"] == "data_sync"  # the operation.type attribute
    assert (server["status"], server["error_message"]) == ("success", None)
    assert (child["status"], child["error_message"]) == ("error", "warehouse timed out")
    assert server["user_id"] == "u-42" and child["user_id"] is None
    for row in rows:
        span = by_name[row["operation_name"]]
        assert span.start_time is not None and span.end_time is not None
        assert row["duration_ms"] == pytest.approx((span.end_time - span.start_time) / 1e6)
        assert row["recorded_at"].timestamp() == pytest.approx(span.end_time / 1e9, abs=1e-6)
        details = row["request_details"]
        assert details["trace_id"] == f"{span.context.trace_id:032x}"
        assert details["span_id"] == f"{span.context.span_id:016x}"
        assert details["service.name"] == "shop" and details["scope"] == "checkout"
    assert server["request_details"]["attributes"] == {
        "enduser.id": "u-42",
        "http.status_code": 200,
        "tags": ["a", "b"],
    }
    assert server["request_details"]["span_kind"] == "server"
    assert child["request_details"]["parent_span_id"] == server["request_details"]["span_id"]


@pytest.fixture
def spans() -> list[ReadableSpan]:
    return made_spans()


@pytest.mark.parametrize("encoding", ["protobuf", "json"])
async def test_the_sdk_exports_spans_that_become_performance_logs(
    make_client: MakeClient, db: asyncpg.Connection, spans: list[ReadableSpan], encoding: str
) -> None:
    client = await make_client(TOKENS)
    endpoint = str(client.make_url("/v1/traces"))
    exporter: Any
    if encoding == "protobuf":
        exporter = ProtobufExporter(endpoint=endpoint, headers=WRITE, compression=Compression.Gzip)
    else:
        exporter = JsonExporter(endpoint=endpoint, headers=WRITE)
    # the exporters are synchronous: in a thread, so the server on this loop can answer
    result = await asyncio.to_thread(exporter.export, spans)
    exporter.shutdown()
    assert result == SpanExportResult.SUCCESS
    # the answer came after the commit: the rows are there now
    check_mapping(await stored(db), spans)


async def test_gzip_json_and_an_idempotent_retry(
    make_client: MakeClient, db: asyncpg.Connection, spans: list[ReadableSpan]
) -> None:
    client = await make_client(TOKENS)
    body = encode_spans(spans).SerializeToString()
    headers = {**PROTOBUF, "Content-Encoding": "gzip", "Idempotency-Key": "batch-1"}
    first = await client.post("/v1/traces", data=gzip.compress(body), headers=headers)
    assert first.status == 200 and first.content_type == "application/x-protobuf"
    assert ExportTraceServiceResponse.FromString(await first.read()) == (
        ExportTraceServiceResponse()
    )  # everything accepted: partial_success unset
    again = await client.post("/v1/traces", data=gzip.compress(body), headers=headers)
    assert again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.content_type == "application/x-protobuf"
    assert len(await stored(db)) == 2


def span_json(**overrides: Any) -> dict[str, Any]:
    now = time.time_ns()
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": "GET /items",
        "kind": 2,
        "startTimeUnixNano": str(now - 5_000_000),
        "endTimeUnixNano": str(now),
        "status": {},
    }
    span.update(overrides)
    return span


def nested(levels: int) -> dict[str, Any]:
    """An OTLP/JSON array value nested ``levels`` deep."""
    value: dict[str, Any] = {"intValue": "1"}
    for _ in range(levels):
        value = {"arrayValue": {"values": [value]}}
    return value


def export_json(*spans: dict[str, Any]) -> dict[str, Any]:
    return {"resourceSpans": [{"scopeSpans": [{"spans": list(spans)}]}]}


async def test_spans_that_cannot_be_records_are_reported_and_the_others_stored(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client(TOKENS)
    now = time.time_ns()
    body = export_json(
        span_json(name="kept"),
        span_json(name="backwards", startTimeUnixNano=str(now), endTimeUnixNano=str(now - 1)),
        span_json(name=""),
        span_json(name="odd status", status={"code": 7}),
        span_json(name="bad type", attributes=[
            {"key": "operation.type", "value": {"stringValue": "Not A Type"}}]),
        span_json(name="long", attributes=[
            {"key": "blob", "value": {"stringValue": "x" * 5000}},
            {"key": "deep", "value": nested(12)},
            {"key": "nul", "value": {"stringValue": "a\u0000b"}},
        ]),
    )  # fmt: skip
    resp = await client.post("/v1/traces", json=body, headers=WRITE)
    assert resp.status == 200, await resp.text()
    partial = (await resp.json())["partialSuccess"]
    assert partial["rejectedSpans"] == 4
    message = partial["errorMessage"]
    for reason in (
        "spans[1] ends before it starts",
        "spans[2] has no name",
        "spans[3] has an unknown status code 7",
        "spans[4] has an operation.type",
    ):
        assert reason in message, message  # fmt: skip
    rows = await stored(db)
    assert [r["operation_name"] for r in rows] == ["kept", "long"]
    attributes = rows[1]["request_details"]["attributes"]
    assert len(attributes["blob"]) == 1024 and attributes["blob"].endswith("…")
    assert attributes["nul"] == "a\ufffdb"
    assert "…" in json.dumps(attributes["deep"], ensure_ascii=False)


async def error(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    body: dict[str, Any] = (await resp.json())["error"]
    return body


async def test_bad_requests_are_refused_and_store_nothing(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client: TestClient[Any, Any] = await make_client(
        {**TOKENS, "web": {"performance_logs_max_body_bytes": 4096}}
    )
    post = client.post
    err = await error(await post("/v1/traces", data=b"\xff\xff\xff", headers=PROTOBUF), 400)
    assert err["code"] == "malformed_protobuf"
    err = await error(await post("/v1/traces", data=b'{"resourceSpans": [', headers=JSON_TYPE), 400)
    assert err["code"] == "malformed_json"
    bad = export_json(span_json(traceId="not-hex"))
    err = await error(await post("/v1/traces", json=bad, headers=WRITE), 400)
    assert err["details"][0]["path"] == "resourceSpans[0].scopeSpans[0].spans[0].traceId"
    bad = export_json(span_json(kind="SERVER"))
    err = await error(await post("/v1/traces", json=bad, headers=WRITE), 400)
    assert err["details"][0]["path"] == "resourceSpans[0].scopeSpans[0].spans[0].kind"
    big = export_json(*[span_json(name=f"s{i}") for i in range(40)])
    await error(await post("/v1/traces", json=big, headers=WRITE), 413)
    bomb = gzip.compress(json.dumps(big).encode() + b" " * 1_000_000)
    await error(
        await post("/v1/traces", data=bomb, headers={**JSON_TYPE, "Content-Encoding": "gzip"}),
        413,
    )
    one = ExportTraceServiceRequest.FromString(b"").SerializeToString()
    resp = await post("/v1/traces", data=one, headers={"Content-Type": "application/x-protobuf"})
    await error(resp, 401)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    read_only = {"Authorization": "Bearer read-token", "Content-Type": "application/json"}
    await error(await post("/v1/traces", json=export_json(span_json()), headers=read_only), 403)
    await error(
        await post("/v1/traces", data=b"x", headers={**WRITE, "Content-Type": "text/plain"}), 415
    )
    assert await stored(db) == []
    # an empty export is fine, and stores nothing
    resp = await post("/v1/traces", data=b"", headers=PROTOBUF)
    assert resp.status == 200 and await resp.read() == b""
