"""The health API against real PostgreSQL: pushes, bad input, the cap, thresholds, overview."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from exporter.features.core import DATABASE
from tests.conftest import MakeClient

CONFIG: dict[str, Any] = {
    "auth": {
        "tokens": [
            {"name": "pusher", "token": "w", "scopes": ["write"]},
            {"name": "viewer", "token": "r", "scopes": ["read"]},
            {"name": "boss", "token": "a", "scopes": ["admin"]},
        ]
    },
    "host": {"enabled": False},
    "metrics": {"max_series_per_family": 4},
}
W = {"Authorization": "Bearer w"}
R = {"Authorization": "Bearer r"}
A = {"Authorization": "Bearer a"}


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[Any, Any]:
    return await make_client(CONFIG)


async def stored(db: asyncpg.Connection) -> int:
    n: int = await db.fetchval("SELECT count(*) FROM monitoring.system_health_metrics")
    return n


async def metrics_text(client: TestClient[Any, Any]) -> str:
    resp = await client.get("/metrics")
    assert resp.status == 200
    return await resp.text()


async def test_push_one_metric_converts_units_and_computes_status(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    resp = await client.post(
        "/api/v1/health-metrics",
        json={
            "service": "dashboard_api",
            "metric_type": "response_time",
            "value": 750,
            "unit": "ms",
            "thresholds": {"warning": 500, "critical": 1000},
            "metadata": {"region": "eu"},
        },
        headers=W,
    )
    assert resp.status == 201
    body = await resp.json()
    assert body["value"] == 0.75 and body["unit"] == "s" and body["status"] == "warning"
    assert body["warning_threshold"] == 0.5 and body["critical_threshold"] == 1.0
    assert body["metadata"] == {"region": "eu"} and body["source"] == "push"
    row = await db.fetchrow("SELECT * FROM monitoring.system_health_metrics")
    assert row["id"] == body["id"] and row["status"] == "warning"
    text = await metrics_text(client)
    labels = 'service="dashboard_api",metric_type="response_time"'
    assert f"monitoring_health_metric_value{{{labels}}} 0.75" in text
    assert f"monitoring_health_status{{{labels}}} 1" in text
    assert f'monitoring_health_threshold{{{labels},level="critical"}} 1.0' in text


async def test_push_an_array_in_one_commit(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    items = [
        {"service": "a", "metric_type": "cpu", "value": 50, "unit": "percent"},
        {"service": "b", "metric_type": "memory", "value": 2, "unit": "gb"},
        {
            "service": "c",
            "metric_type": "queue",
            "value": 3,
            "unit": "count",
            "recorded_at": "2026-01-01T10:00:00+01:00",
        },
    ]
    resp = await client.post("/api/v1/health-metrics", json=items, headers=W)
    assert resp.status == 201
    got = (await resp.json())["items"]
    assert [(g["service_name"], g["value"], g["unit"]) for g in got] == [
        ("a", 0.5, "ratio"),
        ("b", 2 * 1024**3, "bytes"),
        ("c", 3, "count"),
    ]
    assert got[2]["recorded_at"] == "2026-01-01T09:00:00Z"
    # one transaction: created_at is the transaction's start time for every row
    assert (
        await db.fetchval("SELECT count(DISTINCT created_at) FROM monitoring.system_health_metrics")
        == 1
    )


@pytest.mark.parametrize(
    ("body", "code", "path"),
    [
        (
            {"service": "s", "metric_type": "t", "value": 1, "unit": "furlong"},
            "invalid_body",
            "unit",
        ),
        (b'{"service": "s", "metric_type": "t", "value": NaN}', "malformed_json", "(body)"),
        (b'{"service": "s", "metric_type": "t", "value": Infinity}', "malformed_json", "(body)"),
        ({"service": "s", "metric_type": "t", "value": "NaN"}, "invalid_body", "value"),
        ({"service": "s", "metric_type": "t", "value": "Infinity"}, "invalid_body", "value"),
        (b'{"service": "s", "metric_type": "t", "value": 1e999}', "invalid_body", "value"),
        (
            {"service": "s", "metric_type": "t", "value": 1e300, "unit": "gb"},
            "invalid_body",
            "value",
        ),
        (
            {"service": "s", "metric_type": "response_time", "value": -5, "unit": "ms"},
            "invalid_body",
            "value",
        ),
        ({"service": "", "metric_type": "t", "value": 1}, "invalid_body", "service"),
        ({"service": "   ", "metric_type": "t", "value": 1}, "invalid_body", "service"),
        ({"service": "s", "metric_type": "bad-name", "value": 1}, "invalid_body", "metric_type"),
        ({"service": "s", "metric_type": "1st", "value": 1}, "invalid_body", "metric_type"),
        (
            {"service": "s", "metric_type": "t", "value": 1, "colour": "red"},
            "invalid_body",
            "colour",
        ),
        (
            {
                "service": "s",
                "metric_type": "t",
                "value": 1,
                "thresholds": {"warning": 2, "critical": 1},
            },
            "invalid_body",
            "thresholds",
        ),
        (
            {"service": "s", "metric_type": "t", "value": 1, "recorded_at": "2026-01-01T00:00:00"},
            "invalid_body",
            "recorded_at",
        ),
    ],
)
async def test_bad_input_is_400_and_stores_nothing(
    client: TestClient[Any, Any], db: asyncpg.Connection, body: Any, code: str, path: str
) -> None:
    if isinstance(body, bytes):
        resp = await client.post(
            "/api/v1/health-metrics",
            data=body,
            headers={**W, "Content-Type": "application/json"},
        )
    else:
        resp = await client.post("/api/v1/health-metrics", json=body, headers=W)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == code
    assert error["details"][0]["path"] == path
    assert await stored(db) == 0
    assert "monitoring_health_metric_value{" not in await metrics_text(client)


@pytest.mark.parametrize(
    ("bad", "path"),
    [
        ({"service": "s", "metric_type": "t", "value": "high"}, "[2].value"),
        ({"service": "s", "metric_type": "t", "value": -1, "unit": "s"}, "[2].value"),
        ({"service": "", "metric_type": "t", "value": 1}, "[2].service"),
    ],
)
async def test_an_array_with_one_bad_element_names_its_index_and_stores_nothing(
    client: TestClient[Any, Any], db: asyncpg.Connection, bad: dict[str, Any], path: str
) -> None:
    good = {"service": "s", "metric_type": "t", "value": 1}
    resp = await client.post("/api/v1/health-metrics", json=[good, good, bad, good], headers=W)
    assert resp.status == 400
    assert (await resp.json())["error"]["details"][0]["path"] == path
    assert await stored(db) == 0


async def test_label_values_are_escaped_in_metrics(client: TestClient[Any, Any]) -> None:
    service = 'we"ird\\name\nwith ünïcode'
    resp = await client.post(
        "/api/v1/health-metrics",
        json={"service": service, "metric_type": "t", "value": 1},
        headers=W,
    )
    assert resp.status == 201
    text = await metrics_text(client)
    assert 'monitoring_health_metric_value{service="we\\"ird\\\\name\\nwith ünïcode",' in text


async def test_a_push_past_the_series_cap_is_400_and_stores_nothing(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    first = [{"service": f"s{i}", "metric_type": "t", "value": i} for i in range(4)]
    assert (await client.post("/api/v1/health-metrics", json=first, headers=W)).status == 201
    # an update of an existing series is fine at the cap
    update = {"service": "s0", "metric_type": "t", "value": 10}
    assert (await client.post("/api/v1/health-metrics", json=update, headers=W)).status == 201
    over = [
        {"service": "s1", "metric_type": "t", "value": 99},
        {"service": "new", "metric_type": "t", "value": 1},
    ]
    resp = await client.post("/api/v1/health-metrics", json=over, headers=W)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "series_limit"
    assert await stored(db) == 5
    text = await metrics_text(client)
    assert 'service="new"' not in text
    assert 'monitoring_health_metric_value{service="s1",metric_type="t"} 1.0' in text
    assert (
        'monitoring_writes_rejected_total{reason="series_limit",table="system_health_metrics"} 2.0'
        in text
    )


async def test_scopes(client: TestClient[Any, Any]) -> None:
    body = {"service": "s", "metric_type": "t", "value": 1}
    assert (await client.post("/api/v1/health-metrics", json=body, headers=R)).status == 403
    assert (await client.post("/api/v1/health-metrics", json=body)).status == 401
    assert (await client.get("/api/v1/health-metrics", headers=W)).status == 403
    rule = {"warning": 1, "critical": 2}
    assert (await client.put("/api/v1/thresholds/s/t", json=rule, headers=W)).status == 403
    assert (await client.put("/api/v1/thresholds/s/t", json=rule, headers=A)).status == 200
    assert (await client.get("/api/v1/thresholds", headers=R)).status == 200
    assert (await client.get("/api/v1/overview", headers=R)).status == 200


async def test_a_threshold_set_through_the_api_changes_threshold_and_status(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    sample = {"service": "api", "metric_type": "latency", "value": 300, "unit": "ms"}
    resp = await client.post("/api/v1/health-metrics", json=sample, headers=W)
    assert (await resp.json())["status"] == "healthy"
    rule = {"warning": 200, "critical": 500, "unit": "ms"}
    resp = await client.put("/api/v1/thresholds/api/latency", json=rule, headers=A)
    assert resp.status == 200
    body = await resp.json()
    assert body["warning"] == 0.2 and body["origin"] == "api" and body["version"] == 1
    text = await metrics_text(client)
    labels = 'service="api",metric_type="latency"'
    assert f'monitoring_health_threshold{{{labels},level="warning"}} 0.2' in text
    assert f"monitoring_health_status{{{labels}}} 0" in text  # effective on the next sample
    resp = await client.post("/api/v1/health-metrics", json=sample, headers=W)
    assert (await resp.json())["status"] == "warning"
    assert f"monitoring_health_status{{{labels}}} 1" in await metrics_text(client)
    # versioned: a second PUT is version 2, stored in monitoring_dashboard_config
    rule2 = {"warning": 0.1, "critical": 0.2, "expect_version": 1}
    resp = await client.put("/api/v1/thresholds/api/latency", json=rule2, headers=A)
    assert (await resp.json())["version"] == 2
    row = await db.fetchrow(
        "SELECT config, version FROM monitoring.monitoring_dashboard_config"
        " WHERE kind = 'threshold' AND name = 'api/latency'"
    )
    assert row["version"] == 2
    stale = await client.put("/api/v1/thresholds/api/latency", json=rule2, headers=A)
    assert stale.status == 409
    listed = (await (await client.get("/api/v1/thresholds", headers=R)).json())["items"]
    assert [(t["service"], t["metric_type"], t["critical"], t["version"]) for t in listed] == [
        ("api", "latency", 0.2, 2)
    ]


async def test_an_override_wins_over_the_yaml_and_survives_a_restart(
    make_client: MakeClient,
) -> None:
    config = {
        **CONFIG,
        "services": [
            {
                "name": "svc",
                "process": {"name": "no-such-process-x"},
                "thresholds": {"t": {"critical": 10}},
            }
        ],
    }
    first = await make_client(config)
    resp = await first.put("/api/v1/thresholds/svc/t", json={"critical": 3}, headers=A)
    assert resp.status == 200
    second = await make_client(config)

    async def loaded() -> bool:
        items = (await (await second.get("/api/v1/thresholds", headers=R)).json())["items"]
        return any(t["metric_type"] == "t" and t["critical"] == 3 for t in items)

    from tests.conftest import eventually

    await eventually(loaded)


YAML_RULE: dict[str, Any] = {
    **CONFIG,
    "metrics": {**CONFIG["metrics"], "refresh_interval": "100ms"},
    "services": [
        {
            "name": "svc",
            "process": {"name": "no-such-process-x"},
            "thresholds": {"t": {"warning": 5, "critical": 10}},
        }
    ],
}


async def threshold_rows(db: asyncpg.Connection) -> list[tuple[str, int]]:
    rows = await db.fetch(
        "SELECT config::text, version FROM monitoring.monitoring_dashboard_config"
        " WHERE kind = 'threshold' ORDER BY name"
    )
    return [(r["config"], r["version"]) for r in rows]


async def test_removing_an_override_brings_back_the_configured_rule_on_every_replica(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    from tests.conftest import eventually

    first = await make_client(YAML_RULE)
    second = await make_client(YAML_RULE)
    assert (await first.put("/api/v1/thresholds/svc/t", json={"critical": 3}, headers=A)).ok
    sample = {"service": "svc", "metric_type": "t", "value": 4}
    resp = await second.post("/api/v1/health-metrics", json=sample, headers=W)

    async def critical_on_second(level: float) -> bool:
        items = (await (await second.get("/api/v1/thresholds", headers=R)).json())["items"]
        return any(t["metric_type"] == "t" and t["critical"] == level for t in items)

    await eventually(lambda: critical_on_second(3))

    resp = await first.delete("/api/v1/thresholds/svc/t", headers=A)
    assert resp.status == 200
    body = await resp.json()
    assert (body["critical"], body["warning"], body["origin"]) == (10, 5, "config")
    assert body["version"] is None
    labels = 'service="svc",metric_type="t"'
    assert f'monitoring_health_threshold{{{labels},level="critical"}} 10.0' in await metrics_text(
        first
    )
    assert await threshold_rows(db) == [('{"removed": true}', 2)]
    # the other replica gives up its copy on its next re-read, and judges by the YAML again
    await eventually(lambda: critical_on_second(10))
    resp = await second.post("/api/v1/health-metrics", json=sample, headers=W)
    assert (await resp.json())["status"] == "healthy"
    # removing it again: nothing to remove
    again = await second.delete("/api/v1/thresholds/svc/t", headers=A)
    assert again.status == 404
    assert (await again.json())["error"]["code"] == "not_found"
    # a new override outranks the tombstone everywhere
    resp = await second.put("/api/v1/thresholds/svc/t", json={"critical": 7}, headers=A)
    assert (await resp.json())["version"] == 3
    await eventually(lambda: critical_on_second(7))


async def test_removing_needs_admin_an_override_and_the_expected_version(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    never = await client.delete("/api/v1/thresholds/s/t", headers=A)
    assert never.status == 404
    assert await threshold_rows(db) == []
    assert (await client.put("/api/v1/thresholds/s/t", json={"critical": 2}, headers=A)).ok
    before = await threshold_rows(db)
    for headers, status in (({}, 401), (R, 403), (W, 403)):
        assert (await client.delete("/api/v1/thresholds/s/t", headers=headers)).status == status
    stale = await client.delete("/api/v1/thresholds/s/t?expect_version=7", headers=A)
    assert stale.status == 409
    assert (await stale.json())["error"]["code"] == "conflict"
    bad = await client.delete("/api/v1/thresholds/s/t?expect_version=zero", headers=A)
    assert bad.status == 400
    assert (await bad.json())["error"]["code"] == "invalid_query"
    path = await client.delete("/api/v1/thresholds/s/bad-type", headers=A)
    assert path.status == 400
    assert (await path.json())["error"]["code"] == "invalid_path"
    assert await threshold_rows(db) == before  # none of these changed anything
    assert (await client.delete("/api/v1/thresholds/s/t?expect_version=1", headers=A)).ok
    assert await threshold_rows(db) == [('{"removed": true}', 2)]
    listed = (await (await client.get("/api/v1/thresholds", headers=R)).json())["items"]
    assert all(t["origin"] != "api" for t in listed)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/thresholds/s/bad-type", {"critical": 1}),
        ("/api/v1/thresholds/s/t", {"warning": 2, "critical": 1}),
        ("/api/v1/thresholds/s/t", {"critical": 1, "for": 0}),
        ("/api/v1/thresholds/s/t", {"critical": 1, "unit": "furlong"}),
    ],
)
async def test_bad_threshold_is_400_and_stores_nothing(
    client: TestClient[Any, Any], db: asyncpg.Connection, path: str, body: dict[str, Any]
) -> None:
    resp = await client.put(path, json=body, headers=A)
    assert resp.status == 400
    assert (await resp.json())["error"]["details"]
    assert await db.fetchval("SELECT count(*) FROM monitoring.monitoring_dashboard_config") == 0


async def test_history_filters_and_cursor_pagination(client: TestClient[Any, Any]) -> None:
    for i in range(5):
        body = [
            {"service": "a", "metric_type": "t", "value": i},
            {"service": "b", "metric_type": "t", "value": i},
        ]
        assert (await client.post("/api/v1/health-metrics", json=body, headers=W)).status == 201
    seen: list[float] = []
    url = "/api/v1/health-metrics?service=a&limit=2"
    while True:
        page = await (await client.get(url, headers=R)).json()
        seen += [item["value"] for item in page["items"]]
        assert all(item["service_name"] == "a" for item in page["items"])
        if page["next_cursor"] is None:
            break
        url = f"/api/v1/health-metrics?service=a&limit=2&cursor={page['next_cursor']}"
    assert seen == [4, 3, 2, 1, 0]
    bad = await client.get("/api/v1/health-metrics?status=purple", headers=R)
    assert bad.status == 400
    bad = await client.get("/api/v1/health-metrics?cursor=nope", headers=R)
    assert bad.status == 400


async def test_overview_combines_services_alerts_and_quality(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    await db.execute(
        "INSERT INTO monitoring.system_alerts (fingerprint, alert_type, severity, title, source,"
        " starts_at, status, resolved_at) VALUES"
        " ('f1', 'performance', 'high', 'slow', 'api', now(), 'active', NULL),"
        " ('f2', 'performance', 'high', 'slow', 'api', now(), 'active', NULL),"
        " ('f3', 'security', 'low', 'x', 'api', now(), 'resolved', now())"
    )
    await db.execute(
        "INSERT INTO monitoring.data_quality_indicators (source, dataset, dimension, score,"
        " status, warning_level, critical_level, measured_at) VALUES"
        " ('shop', 'orders', 'completeness', 10, 'critical', 50, 20, now() - interval '1 hour'),"
        " ('shop', 'orders', 'completeness', 90, 'healthy', 50, 20, now()),"
        " ('shop', 'orders', 'accuracy', 70, 'healthy', 50, 20, now())"
    )
    body = {
        "service": "api",
        "metric_type": "latency",
        "value": 2,
        "thresholds": {"warning": 1, "critical": 5},
    }
    await client.post("/api/v1/health-metrics", json=body, headers=W)
    overview = await (await client.get("/api/v1/overview", headers=R)).json()
    assert overview["status"] == "warning"
    assert overview["services"] == [
        {"service": "api", "status": "warning", "metrics": {"latency": "warning"}}
    ]
    assert overview["alerts"] == {"low": 0, "medium": 0, "high": 2, "critical": 0}
    # only the latest measurement of each member counts: the old critical one is superseded
    assert overview["data_quality"] == {"average_score": 80.0, "status": "healthy", "sources": 1}
    assert "monitoring_overall_status 1.0" in await metrics_text(client)


async def test_storage_down_is_503_and_changes_nothing(client: TestClient[Any, Any]) -> None:
    await client.app[DATABASE].close()
    body = {"service": "s", "metric_type": "t", "value": 1}
    resp = await client.post("/api/v1/health-metrics", json=body, headers=W)
    assert resp.status == 503
    assert "Retry-After" in resp.headers
    assert "monitoring_health_metric_value{" not in await metrics_text(client)
