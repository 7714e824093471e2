"""Hostile input: every bad request is a 4xx naming the field, and nothing is stored.

Each case was a 500 before (issue 10): JSON nested 10,000 levels inside a free-form field,
NUL in a body or a query, bytes that are not UTF-8, timestamps Python or PostgreSQL cannot
hold, integers beyond their column. The cases loop inside a few tests (one database each).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from exporter.domain.limits import MAX_DEPTH
from tests.conftest import MakeClient

TOKENS = {"auth": {"tokens": [{"name": "root", "token": "a", "scopes": ["admin"]}]}}
CONFIG: dict[str, Any] = {**TOKENS, "host": {"enabled": False}}
AUTH = {"Authorization": "Bearer a"}
JSON = {**AUTH, "Content-Type": "application/json"}
NDJSON = {**AUTH, "Content-Type": "application/x-ndjson"}
TABLES = (
    "system_health_metrics",
    "data_quality_indicators",
    "system_alerts",
    "system_alert_events",
    "monitoring_dashboard_config",
    "system_performance_logs",
)
NUL = "\u0000"


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def deep_path(prefix: str, level: int) -> str:
    """The path of the first array beyond the limit in ``deep()`` placed at ``level``."""
    return prefix + "[0]" * (MAX_DEPTH + 1 - level)


def metric(**over: Any) -> dict[str, Any]:
    return {"service": "api", "metric_type": "cpu", "value": 1, **over}


def indicator(**over: Any) -> dict[str, Any]:
    return {"source": "s", "dataset": "d", "dimension": "accuracy", "score": 99.5, **over}


def log(**over: Any) -> dict[str, Any]:
    return {"operation_type": "api_call", "duration_ms": 1, "status": "success", **over}


def new_alert(**over: Any) -> dict[str, Any]:
    return {"title": "t", "severity": "low", "alert_type": "security", **over}


def am_alert(**over: Any) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": "Hostile"},
        "annotations": {},
        "startsAt": "2024-05-01T12:00:00Z",
        "fingerprint": "f00d",
        **over,
    }


def notification(*alerts: dict[str, Any], **over: Any) -> dict[str, Any]:
    return {"version": "4", "status": "firing", "alerts": list(alerts), **over}


def encode(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def with_raw(template: dict[str, Any], field: str, raw: bytes) -> bytes:
    """``template`` as JSON with ``field``'s value replaced by raw bytes (bad UTF-8, depth)."""
    marker = "@@RAW@@"
    text = json.dumps({**template, field: marker}).encode()
    return text.replace(json.dumps(marker).encode(), raw)


async def counts(db: asyncpg.Connection) -> dict[str, int]:
    found = {}
    for table in TABLES:
        found[table] = await db.fetchval(f"SELECT count(*) FROM monitoring.{table}")
    return found


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[Any, Any]:
    return await make_client(CONFIG)


Case = tuple[str, str, Any, dict[str, str], str]


async def assert_refused(
    client: TestClient[Any, Any], db: asyncpg.Connection, cases: list[Case], status: int = 400
) -> None:
    """Each case is answered ``status`` with its path among the details; nothing is stored."""
    before = await counts(db)
    for method, url, body, headers, path in cases:
        data = None if body is None else encode(body)
        resp = await client.request(method, url, data=data, headers=headers)
        text = await resp.text()
        assert resp.status == status, (method, url, path, text[:300])
        error = json.loads(text)["error"]
        paths = [d["path"] for d in error["details"]]
        assert path in paths, (method, url, path, paths)
        assert await counts(db) == before, (method, url, path)


async def test_json_nested_10000_levels_in_any_free_form_field_is_400(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    nested = deep(10_000).encode()
    cases: list[Case] = [
        ("POST", "/api/v1/health-metrics", with_raw(metric(), "metadata", b'{"x":' + nested + b"}"),
         JSON, deep_path("metadata.x", 3)),
        ("POST", "/api/v1/health-metrics",
         b"[" + with_raw(metric(), "metadata", b'{"x":' + nested + b"}") + b"]",
         JSON, deep_path("[0].metadata.x", 4)),
        ("POST", "/api/v1/quality-indicators", with_raw(indicator(), "issues", b"[" + nested + b"]"),
         JSON, deep_path("issues[0]", 3)),
        ("POST", "/api/v1/performance-logs",
         with_raw(log(), "request_details", b'{"x":' + nested + b"}"),
         JSON, deep_path("request_details.x", 3)),
        ("POST", "/api/v1/performance-logs",
         b"[" + encode(log()) + b"," + with_raw(log(), "request_details", b'{"x":' + nested + b"}")
         + b"]", JSON, deep_path("[1].request_details.x", 4)),
        ("POST", "/api/v1/performance-logs",
         encode(log()) + b"\n" + with_raw(log(), "request_details", b'{"x":' + nested + b"}"),
         NDJSON, deep_path("line 2.request_details.x", 3)),
        # a typed field is refused by its type at once (msgspec's path for a map value)
        ("POST", "/api/v1/alerts", with_raw(new_alert(), "labels", b'{"x":' + nested + b"}"),
         JSON, "labels[...]"),
        ("POST", "/api/v1/alertmanager",
         with_raw(notification(am_alert()), "truncatedAlerts", nested), JSON,
         deep_path("truncatedAlerts", 2)),
        ("POST", "/api/v1/alertmanager",
         encode(notification(am_alert())).replace(b'"fingerprint"', b'"future": ' + nested
                                                  + b', "fingerprint"'),
         JSON, deep_path("alerts[0].future", 4)),
        ("POST", "/api/v1/alerts/1/acknowledge", with_raw({"by": "x"}, "note", nested), JSON,
         "note"),
    ]  # fmt: skip
    await assert_refused(client, db, cases)


async def test_nesting_past_the_limit_is_refused_at_any_depth_with_the_same_path(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    # msgspec gives up near 1,000 levels on its own; the limit applies well before that
    for levels in (MAX_DEPTH, 100, 900, 10_000):
        body = with_raw(metric(), "metadata", b'{"x":' + deep(levels).encode() + b"}")
        await assert_refused(
            client,
            db,
            [("POST", "/api/v1/health-metrics", body, JSON, deep_path("metadata.x", 3))],
        )
    # one level less is stored, and reads back
    fits = with_raw(metric(), "metadata", b'{"x":' + deep(MAX_DEPTH - 2).encode() + b"}")
    resp = await client.post("/api/v1/health-metrics", data=fits, headers=JSON)
    assert resp.status == 201, await resp.text()
    listed = await client.get("/api/v1/health-metrics", headers=AUTH)
    assert listed.status == 200
    assert (await listed.json())["items"][0]["metadata"]["x"] == json.loads(deep(MAX_DEPTH - 2))


async def test_nul_in_any_string_of_any_body_is_400_with_its_path(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    created = await client.post("/api/v1/alerts", json=new_alert(), headers=AUTH)
    alert = (await created.json())["id"]
    ack, resolve = f"/api/v1/alerts/{alert}/acknowledge", f"/api/v1/alerts/{alert}/resolve"
    cases: list[Case] = [
        ("POST", "/api/v1/health-metrics", metric(service="a" + NUL), JSON, "service"),
        ("POST", "/api/v1/health-metrics", metric(metadata={"k": "v" + NUL}), JSON, "metadata.k"),
        ("POST", "/api/v1/health-metrics", metric(metadata={"k" + NUL: 1}), JSON, "metadata.k" + NUL),
        ("POST", "/api/v1/health-metrics", [metric(), metric(metadata={"a": [{"b": NUL}]})], JSON,
         "[1].metadata.a[0].b"),
        ("POST", "/api/v1/quality-indicators", indicator(source=NUL), JSON, "source"),
        ("POST", "/api/v1/quality-indicators", indicator(dataset="d" + NUL), JSON, "dataset"),
        ("POST", "/api/v1/quality-indicators", indicator(issues=[{"col": NUL}]), JSON,
         "issues[0].col"),
        ("POST", "/api/v1/alerts", new_alert(title=NUL), JSON, "title"),
        ("POST", "/api/v1/alerts", new_alert(service="s" + NUL), JSON, "service"),
        ("POST", "/api/v1/alerts", new_alert(description=NUL), JSON, "description"),
        ("POST", "/api/v1/alerts", new_alert(labels={"team": NUL}), JSON, "labels.team"),
        ("POST", "/api/v1/alerts", new_alert(labels={NUL: "x"}), JSON, "labels." + NUL),
        ("POST", ack, {"by": "ann" + NUL}, JSON, "by"),
        ("POST", ack, {"by": "ann", "note": NUL}, JSON, "note"),
        ("POST", resolve, {"by": NUL}, JSON, "by"),
        ("POST", resolve, {"by": "bob", "note": "done" + NUL}, JSON, "note"),
        ("PUT", "/api/v1/thresholds/api/cpu", {"warning": 1, "unit": NUL}, JSON, "unit"),
        ("PUT", "/api/v1/thresholds/api%00/cpu", {"warning": 1}, JSON, "service"),
        ("POST", "/api/v1/performance-logs", log(operation_name=NUL), JSON, "operation_name"),
        ("POST", "/api/v1/performance-logs", log(error_message=NUL), JSON, "error_message"),
        ("POST", "/api/v1/performance-logs", log(user_id=NUL), JSON, "user_id"),
        ("POST", "/api/v1/performance-logs", log(request_details={"k": NUL}), JSON,
         "request_details"),
        ("POST", "/api/v1/performance-logs", encode(log()) + b"\n" + encode(log(user_id=NUL)),
         NDJSON, "line 2.user_id"),
        ("POST", "/api/v1/alertmanager", notification(am_alert(labels={"a": NUL})), JSON,
         "alerts[0].labels.a"),
        ("POST", "/api/v1/alertmanager", notification(am_alert(annotations={"summary": NUL})),
         JSON, "alerts[0].annotations.summary"),
        ("POST", "/api/v1/alertmanager", notification(am_alert(fingerprint="f" + NUL)), JSON,
         "alerts[0].fingerprint"),
        ("POST", "/api/v1/alertmanager", notification(am_alert(generatorURL=NUL)), JSON,
         "alerts[0].generatorURL"),
    ]  # fmt: skip
    await assert_refused(client, db, cases)
    assert (await (await client.get(f"/api/v1/alerts/{alert}", headers=AUTH)).json())[
        "status"
    ] == "active"


async def test_nul_in_a_query_or_a_path_is_400_with_its_name(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    cases: list[Case] = [
        ("GET", f"/api/v1/health-metrics?{name}=x%00", None, AUTH, name)
        for name in ("service", "metric_type", "cursor")
    ]
    cases += [
        ("GET", f"/api/v1/quality-indicators?{name}=%00", None, AUTH, name)
        for name in ("source", "dataset")
    ]
    cases += [
        ("GET", "/api/v1/alerts?service=%00", None, AUTH, "service"),
        ("GET", "/api/v1/alerts?severity=low%00", None, AUTH, "severity"),
        ("GET", "/api/v1/alerts/1%00", None, AUTH, "id"),
        ("GET", "/api/v1/performance-logs/summary?operation_type=%00", None, AUTH,
         "operation_type"),
        ("GET", "/api/v1/health-metrics?x%00=1", None, AUTH, "x" + NUL),
        ("DELETE", "/api/v1/thresholds/api/cpu%00", None, AUTH, "metric_type"),
    ]  # fmt: skip
    cases += [
        ("GET", f"/api/v1/performance-logs?{name}=%00", None, AUTH, name)
        for name in ("operation_type", "operation_name", "user_id")
    ]
    await assert_refused(client, db, cases)


async def test_bytes_that_are_not_utf8_are_400_with_the_field(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    bad = b'"caf\xe9"'  # Latin-1, not UTF-8
    cases: list[Case] = [
        ("POST", "/api/v1/performance-logs", with_raw(log(), "request_details", b'{"k": ' + bad + b"}"),
         JSON, "request_details"),
        ("POST", "/api/v1/performance-logs",
         b"[" + encode(log()) + b"," + with_raw(log(), "request_details", b'{"k": ' + bad + b"}")
         + b"]", JSON, "[1].request_details"),
        ("POST", "/api/v1/performance-logs",
         encode(log()) + b"\n" + with_raw(log(), "request_details", b'{"k": ' + bad + b"}"),
         NDJSON, "line 2.request_details"),
        ("POST", "/api/v1/performance-logs",
         encode(log()) + b"\n" + with_raw(log(), "user_id", bad), NDJSON, "line 2.user_id"),
        ("POST", "/api/v1/health-metrics", with_raw(metric(), "metadata", b'{"k": ' + bad + b"}"),
         JSON, "metadata.k"),
        ("POST", "/api/v1/quality-indicators", with_raw(indicator(), "issues", b"[" + bad + b"]"),
         JSON, "issues[0]"),
        ("POST", "/api/v1/alerts", with_raw(new_alert(), "title", bad), JSON, "title"),
        ("POST", "/api/v1/alerts/1/acknowledge", with_raw({}, "by", bad), JSON, "by"),
        ("POST", "/api/v1/alertmanager",
         encode(notification(am_alert())).replace(b'"Hostile"', bad), JSON,
         "alerts[0].labels.alertname"),
        # a lone UTF-16 surrogate cannot be stored either
        ("POST", "/api/v1/performance-logs", with_raw(log(), "request_details", b'{"k": "\\udc00"}'),
         JSON, "request_details.k"),
        ("POST", "/api/v1/health-metrics", with_raw(metric(), "metadata", b'{"k": "\\ud800x"}'),
         JSON, "metadata.k"),
    ]  # fmt: skip
    await assert_refused(client, db, cases)


async def test_timestamps_outside_what_can_be_stored_are_400_in_every_time_field(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    early, late = "0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"
    cases: list[Case] = []
    for at in (
        early,
        late,
        "294277-01-01T00:00:00Z",
        "0000-01-01T00:00:00Z",
        "2024-13-01T00:00:00Z",
    ):
        cases += [
            ("POST", "/api/v1/health-metrics", metric(recorded_at=at), JSON, "recorded_at"),
            ("POST", "/api/v1/quality-indicators", indicator(measured_at=at), JSON, "measured_at"),
            ("POST", "/api/v1/performance-logs", log(recorded_at=at), JSON, "recorded_at"),
            ("POST", "/api/v1/alertmanager", notification(am_alert(startsAt=at)), JSON,
             "alerts[0].startsAt"),
        ]  # fmt: skip
    cases.append(
        ("POST", "/api/v1/alertmanager", notification(am_alert(status="resolved", endsAt=late)),
         JSON, "alerts[0].endsAt"),
    )  # fmt: skip
    for url in (
        "/api/v1/health-metrics",
        "/api/v1/alerts",
        "/api/v1/quality-indicators",
        "/api/v1/quality/overview",
        "/api/v1/performance-logs",
        "/api/v1/performance-logs/summary",
    ):
        for name in ("since", "until") if not url.endswith("overview") else ("since",):
            for at in (early, late, "294277-01-01T00:00:00Z"):
                cases.append(("GET", f"{url}?{name}={at.replace('+', '%2B')}", None, AUTH, name))
    await assert_refused(client, db, cases)


async def test_an_offset_postgresql_does_not_parse_is_stored_as_the_same_instant(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    # RFC 3339 allows offsets up to 23:59, PostgreSQL parses at most 15:59 from text:
    # the instant is what counts, so it is taken and stored in UTC
    at = "2024-05-01T20:00:00+16:00"
    instant = datetime(2024, 5, 1, 4, 0, tzinfo=UTC)
    resp = await client.post("/api/v1/alertmanager", json=notification(am_alert(startsAt=at)),
                             headers=AUTH)  # fmt: skip
    assert resp.status == 200, await resp.text()
    assert await db.fetchval("SELECT starts_at FROM monitoring.system_alerts") == instant
    resp = await client.post("/api/v1/health-metrics", json=metric(recorded_at=at), headers=AUTH)
    assert resp.status == 201
    assert await db.fetchval("SELECT recorded_at FROM monitoring.system_health_metrics") == instant
    listed = await client.get("/api/v1/alerts?since=2024-05-01T19:59:00%2B16:00", headers=AUTH)
    assert len((await listed.json())["items"]) == 1


async def test_numbers_and_sizes_beyond_their_column_are_400_with_the_path(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    cases: list[Case] = [
        ("PUT", "/api/v1/thresholds/api/cpu", {"warning": 1, "expect_version": 2**31}, JSON,
         "expect_version"),
        ("DELETE", f"/api/v1/thresholds/api/cpu?expect_version={2**31}", None, AUTH,
         "expect_version"),
        ("POST", "/api/v1/quality-indicators",
         indicator(score=None, total_records=2**63, valid_records=1), JSON, "total_records"),
        ("POST", "/api/v1/quality-indicators",
         indicator(score=None, total_records=2, valid_records=-1), JSON, "valid_records"),
        ("POST", "/api/v1/performance-logs", log(memory_usage_bytes=2**63), JSON,
         "memory_usage_bytes"),
        ("GET", f"/api/v1/alerts/{2**63}", None, AUTH, "id"),
        ("GET", "/api/v1/alerts/0", None, AUTH, "id"),
        ("GET", "/api/v1/alerts/-1", None, AUTH, "id"),
        ("POST", f"/api/v1/alerts/{2**64}/acknowledge", {"by": "a"}, JSON, "id"),
        ("POST", "/api/v1/alerts/1.5/resolve", {"by": "a"}, JSON, "id"),
        ("GET", f"/api/v1/alerts?limit={2**63}", None, AUTH, "limit"),
        ("GET", "/api/v1/performance-logs?min_duration_ms=nan", None, AUTH, "min_duration_ms"),
        ("GET", "/api/v1/performance-logs?min_duration_ms=inf", None, AUTH, "min_duration_ms"),
        # service_name is indexed: a btree entry holds at most 2704 bytes
        ("POST", "/api/v1/alertmanager",
         notification(am_alert(labels={"alertname": "x", "service": "s" * 3000})), JSON,
         "alerts[0].labels.service"),
        ("POST", "/api/v1/alertmanager",
         notification(am_alert(), am_alert(fingerprint="2", labels={"job": "j" * 201})), JSON,
         "alerts[1].labels.job"),
        ("POST", "/api/v1/alerts", new_alert(service="s" * 201), JSON, "service"),
        # the summary's avg() over durations near float8's limit overflowed (a 500 on reads)
        ("POST", "/api/v1/performance-logs", log(duration_ms=1e13), JSON, "duration_ms"),
        ("POST", "/api/v1/health-metrics", [], JSON, "(body)"),
        # a time in a query is RFC 3339, as documented, not Unix seconds
        ("GET", "/api/v1/alerts?since=0.5", None, AUTH, "since"),
        ("GET", "/api/v1/performance-logs/summary?until=1700000000", None, AUTH, "until"),
    ]  # fmt: skip
    await assert_refused(client, db, cases)
