"""The quality push API, the list, the overview, and the data_quality notifications."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MakeClient

CONFIG = {
    "auth": {
        "tokens": [
            {"name": "writer", "token": "w-token", "scopes": ["write"]},
            {"name": "reader", "token": "r-token", "scopes": ["read"]},
        ]
    }
}
W = {"Authorization": "Bearer w-token"}
R = {"Authorization": "Bearer r-token"}
URL = "/api/v1/quality-indicators"


@pytest.fixture
async def client(make_client: MakeClient) -> TestClient[Any, Any]:
    return await make_client(CONFIG)


async def count(db: asyncpg.Connection) -> int:
    n: int = await db.fetchval("SELECT count(*) FROM monitoring.data_quality_indicators")
    return n


async def samples(client: TestClient[Any, Any], name: str) -> dict[tuple[str, ...], float]:
    text = await (await client.get("/metrics")).text()
    out: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(v for _, v in sorted(s.labels.items()))] = s.value
    return out


async def test_push_from_counts_computes_score_and_status(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    body = {"source": "shopify", "dataset": "sales", "dimension": "completeness",
            "total_records": 1000, "valid_records": 985,
            "issues": [{"column": "email", "missing": 15}]}  # fmt: skip
    resp = await client.post(URL, json=body, headers=W)
    assert resp.status == 201
    got = await resp.json()
    assert got["score"] == 98.5
    assert got["status"] == "warning"
    assert got["warning_level"] == 99 and got["critical_level"] == 95
    assert got["issues"] == [{"column": "email", "missing": 15}]
    row = await db.fetchrow("SELECT * FROM monitoring.data_quality_indicators")
    assert row["score"] == 98.5 and row["total_records"] == 1000 and row["check_name"] is None
    # dataset, dimension, source sorted by label name
    assert (await samples(client, "monitoring_data_quality_score")) == {
        ("sales", "completeness", "shopify"): 98.5
    }
    assert (await samples(client, "monitoring_data_quality_status")) == {
        ("sales", "completeness", "shopify"): 1.0
    }


async def test_push_array_with_explicit_score_and_levels(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    body = [
        {"source": "kajabi", "dataset": "members", "dimension": "accuracy", "score": 80,
         "levels": {"warning": 90, "critical": 70}, "measured_at": "2024-05-01T10:00:00Z"},
        {"source": "kajabi", "dataset": "members", "dimension": "freshness", "score": 100},
    ]  # fmt: skip
    resp = await client.post(URL, json=body, headers=W)
    assert resp.status == 201
    items = (await resp.json())["items"]
    assert [i["status"] for i in items] == ["warning", "healthy"]
    assert items[0]["measured_at"].startswith("2024-05-01T10:00:00")
    assert await count(db) == 2


async def test_zero_total_is_stored_as_undefined(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    body = {"source": "s", "dataset": "d", "dimension": "accuracy",
            "total_records": 0, "valid_records": 0}  # fmt: skip
    resp = await client.post(URL, json=body, headers=W)
    assert resp.status == 201
    got = await resp.json()
    assert got["score"] is None and got["status"] == "unknown"
    assert await samples(client, "monitoring_data_quality_score") == {}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ([{"source": "s", "dataset": "d", "dimension": "accuracy", "score": 50},
          {"source": "s", "dataset": "d", "dimension": "accuracy",
           "total_records": 10, "valid_records": 11}], "[1].valid_records"),
        ({"source": "s", "dataset": "d", "dimension": "accuracy", "score": 100.5}, "score"),
        ({"source": "s", "dataset": "d", "dimension": "accuracy", "score": -1}, "score"),
        ([{"source": "s", "dataset": "d", "dimension": "accuracy", "score": 50},
          {"source": "s", "dataset": "d", "dimension": "validity", "score": 50}],
         "[1].dimension"),
        ({"source": "s", "dataset": "d", "dimension": "accuracy"}, "score"),
        ({"source": "s", "dataset": "d", "dimension": "accuracy", "total_records": 5},
         "valid_records"),
        ({"source": "", "dataset": "d", "dimension": "accuracy", "score": 5}, "source"),
        ({"source": "s", "dataset": "d", "dimension": "accuracy", "score": 5, "extra": 1},
         "extra"),
        ({"source": "s", "dataset": "d", "dimension": "accuracy", "score": 5,
          "levels": {"warning": 50, "critical": 60}}, "levels.critical"),
        ({"source": "s", "dataset": "d", "dimension": "accuracy", "score": 5,
          "measured_at": "2024-05-01T10:00:00"}, "measured_at"),
        ({"source": "s\u0000", "dataset": "d", "dimension": "accuracy", "score": 5}, "source"),
        ({"source": "s", "dataset": "d", "dimension": "accuracy", "score": 5,
          "issues": ["a\u0000b"]}, "issues[0]"),
        ({"source": "s", "dataset": "d", "dimension": "accuracy",
          "total_records": 2**64, "valid_records": 1}, "total_records"),
    ],
)  # fmt: skip
async def test_bad_pushes_are_400_and_store_nothing(
    client: TestClient[Any, Any], db: asyncpg.Connection, body: Any, path: str
) -> None:
    resp = await client.post(URL, json=body, headers=W)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["code"] == "invalid_body"
    assert path in [d["path"] for d in error["details"]]
    assert await count(db) == 0
    assert await samples(client, "monitoring_data_quality_score") == {}


async def test_malformed_json_and_wrong_scope(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    resp = await client.post(
        URL, data=b"{not json", headers={**W, "Content-Type": "application/json"}
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "malformed_json"
    body = {"source": "s", "dataset": "d", "dimension": "accuracy", "score": 5}
    assert (await client.post(URL, json=body, headers=R)).status == 403
    assert (await client.post(URL, json=body)).status == 401
    assert await count(db) == 0


async def test_injection_attempts_are_stored_literally(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    evil = "x'); DROP TABLE monitoring.data_quality_indicators; --"
    body = {"source": evil, "dataset": 'd" OR 1=1 --', "dimension": "accuracy", "score": 5,
            "issues": [{"sql": "'; DELETE FROM monitoring.system_alerts; --"}]}  # fmt: skip
    resp = await client.post(URL, json=body, headers=W)
    assert resp.status == 201
    row = await db.fetchrow(
        "SELECT source, dataset, issues FROM monitoring.data_quality_indicators"
    )
    assert row["source"] == evil and row["dataset"] == 'd" OR 1=1 --'
    assert "DELETE FROM" in row["issues"]
    resp = await client.get(URL, params={"source": evil}, headers=R)
    assert [i["source"] for i in (await resp.json())["items"]] == [evil]


async def test_list_filters_and_pages(client: TestClient[Any, Any]) -> None:
    batch = [
        {"source": src, "dataset": "d", "dimension": dim, "score": i,
         "measured_at": f"2024-05-01T10:{i:02d}:00Z"}
        for i, (src, dim) in enumerate(
            [(s, d) for s in ("a", "b") for d in ("accuracy", "freshness", "completeness")]
        )
    ]  # fmt: skip
    assert (await client.post(URL, json=batch, headers=W)).status == 201
    resp = await client.get(URL, params={"source": "a", "limit": "2"}, headers=R)
    page1 = await resp.json()
    assert [i["score"] for i in page1["items"]] == [2, 1]
    resp = await client.get(
        URL, params={"source": "a", "limit": "2", "cursor": page1["next_cursor"]}, headers=R
    )
    page2 = await resp.json()
    assert [i["score"] for i in page2["items"]] == [0] and page2["next_cursor"] is None
    resp = await client.get(URL, params={"dimension": "freshness"}, headers=R)
    assert [i["source"] for i in (await resp.json())["items"]] == ["b", "a"]
    resp = await client.get(URL, params={"since": "2024-05-01T10:04:00Z"}, headers=R)
    assert [i["score"] for i in (await resp.json())["items"]] == [5, 4]
    for params in ({"dimension": "nope"}, {"limit": "0"}, {"cursor": "zz"}, {"bogus": "1"}):
        resp = await client.get(URL, params=params, headers=R)
        assert resp.status == 400, params
        assert (await resp.json())["error"]["code"] == "invalid_query"


async def test_overview_aggregates_latest_per_source_and_dimension(
    client: TestClient[Any, Any],
) -> None:
    def ind(src: str, ds: str, dim: str, score: float, at: str) -> dict[str, Any]:
        return {"source": src, "dataset": ds, "dimension": dim, "score": score,
                "measured_at": f"2024-05-01T{at}Z"}  # fmt: skip

    batch = [
        ind("shopify", "orders", "completeness", 50, "09:00:00"),  # superseded below
        ind("shopify", "orders", "completeness", 98, "10:00:00"),
        ind("shopify", "customers", "completeness", 100, "10:00:00"),
        ind("shopify", "orders", "freshness", 100, "10:00:00"),
        ind("meta_ads", "insights", "accuracy", 90, "10:00:00"),
    ]
    assert (await client.post(URL, json=batch, headers=W)).status == 201
    resp = await client.get("/api/v1/quality/overview", headers=R)
    assert resp.status == 200
    ov = await resp.json()
    shop = next(s for s in ov["sources"] if s["source"] == "shopify")
    dims = {d["dimension"]: d for d in shop["dimensions"]}
    assert dims["completeness"]["score"] == 99.0
    assert dims["completeness"]["status"] == "healthy"
    assert dims["completeness"]["measurements"] == 2
    assert shop["score"] == 99.5
    assert ov["overall"] == {"score": (99.5 + 90) / 2, "status": "critical", "sources": 2}
    assert (await client.get("/api/v1/quality/overview")).status == 401


async def test_series_cap_rejects_the_whole_push(
    make_client: MakeClient, db: asyncpg.Connection
) -> None:
    client = await make_client({**CONFIG, "metrics": {"max_series_per_family": 2}})
    one = {"source": "s", "dataset": "a", "dimension": "accuracy", "score": 1}
    assert (await client.post(URL, json=one, headers=W)).status == 201
    batch = [{**one, "dataset": "b"}, {**one, "dataset": "c"}]
    resp = await client.post(URL, json=batch, headers=W)
    assert resp.status == 400
    assert (await resp.json())["error"]["code"] == "series_limit"
    assert await count(db) == 1
    # an existing series can still be updated
    assert (await client.post(URL, json={**one, "score": 2}, headers=W)).status == 201


async def test_inserts_are_logged_for_the_stream_and_wake_it(
    client: TestClient[Any, Any], db: asyncpg.Connection
) -> None:
    got: asyncio.Queue[str] = asyncio.Queue()
    await db.add_listener("change_log", lambda *args: got.put_nowait(args[2]))
    body = {"source": "s", "dataset": "d", "dimension": "accuracy", "score": 5}
    resp = await client.post(URL, json=body, headers=W)
    row_id = (await resp.json())["id"]
    assert await asyncio.wait_for(got.get(), timeout=5) == "change_log"
    logged = await db.fetch(
        "SELECT channel, data FROM monitoring.change_log"
        " WHERE channel = 'data_quality' OR data->>'kind' = 'quality' ORDER BY xid, id"
    )
    # the measurement, then the member's first status
    assert [r["channel"] for r in logged] == ["data_quality", "status_changes"]
    assert json.loads(logged[0]["data"])["id"] == row_id
    assert json.loads(logged[1]["data"])["indicator_id"] == row_id


async def test_openapi_describes_the_routes(client: TestClient[Any, Any]) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    assert doc["paths"]["/api/v1/quality-indicators"]["post"]["security"] == [{"bearer": ["write"]}]
    assert "/api/v1/quality/overview" in doc["paths"]
    assert "IndicatorIn" in doc["components"]["schemas"]
