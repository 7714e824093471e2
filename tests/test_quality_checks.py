"""Scheduled quality checks against real source databases with known defects."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import MakeClient, eventually
from tests.support.metrics import Samples, samples_by_name
from tests.support.postgres import create_database, drop_database

SHOP = """
CREATE SCHEMA shopify;
CREATE TABLE shopify.orders (id int PRIMARY KEY, email text, total numeric(10,2),
                             updated_at timestamptz);
INSERT INTO shopify.orders
SELECT id,
       CASE WHEN id % 64 = 0 AND id <= 640 THEN NULL
            WHEN id % 64 = 0 THEN '' ELSE 'c' || id || '@example.com' END,
       CASE WHEN id % 150 = 0 THEN -5 ELSE id * 1.5 END,
       now() - interval '10 minutes' - id * interval '1 second'
FROM generate_series(1, 1000) AS id;
CREATE TABLE shopify.sync_log (id int, synced_at timestamptz);
INSERT INTO shopify.sync_log VALUES (1, now() - interval '9 hours'), (2, now() - interval '7 hours');
CREATE TABLE shopify.refunds (id int, reason text);
CREATE SCHEMA kajabi;
CREATE TABLE kajabi.members (id int, email text);
INSERT INTO kajabi.members
SELECT id, CASE WHEN id % 10 = 0 THEN 'member' || id ELSE 'm' || id || '@example.com' END
FROM generate_series(1, 200) AS id;
"""

WAREHOUSE = """
CREATE SCHEMA sales;
CREATE TABLE sales.orders (order_id int PRIMARY KEY, total numeric(10,2));
INSERT INTO sales.orders
SELECT id, CASE WHEN id % 200 = 7 THEN id * 1.5 + 1 ELSE id * 1.5 END
FROM generate_series(1, 990) AS id;
UPDATE sales.orders SET total = -5 WHERE order_id % 150 = 0;
"""


@pytest.fixture
async def sources(admin_url: str) -> AsyncIterator[tuple[str, str]]:
    """A shop database and a warehouse database with the defects above."""
    shop, warehouse = await create_database(admin_url), await create_database(admin_url)
    for url, sql in ((shop, SHOP), (warehouse, WAREHOUSE)):
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()
    yield shop, warehouse
    await drop_database(admin_url, shop)
    await drop_database(admin_url, warehouse)


def config(shop: str, warehouse: str) -> dict[str, Any]:
    common = {"interval": "1h", "timeout": "10s"}
    checks: list[dict[str, Any]] = [
        {"name": "orders_email_complete", "source": "shop", "dataset": "orders",
         "dimension": "completeness", "table": "shopify.orders", "columns": ["email"],
         "key_column": "id", "sample_size": 3},
        {"name": "orders_total_valid", "source": "shop", "dataset": "orders",
         "dimension": "accuracy", "table": "shopify.orders", "valid_when": "total >= 0"},
        {"name": "orders_fresh", "source": "shop", "dataset": "orders",
         "dimension": "freshness", "table": "shopify.orders", "timestamp_column": "updated_at",
         "warn_after": "1h", "error_after": "6h"},
        {"name": "sync_fresh", "source": "shop", "dataset": "sync_log",
         "dimension": "freshness", "table": "shopify.sync_log", "timestamp_column": "synced_at",
         "warn_after": "1h", "error_after": "6h"},
        {"name": "orders_match_warehouse", "source": "shop", "dataset": "orders",
         "dimension": "consistency", "weight": 3, "sample_size": 3,
         "compare": {"left": {"source": "shop", "query": "SELECT id, total FROM shopify.orders"},
                     "right": {"source": "warehouse",
                               "query": "SELECT order_id, total FROM sales.orders"}}},
        {"name": "orders_count_match", "source": "shop", "dataset": "orders",
         "dimension": "consistency",
         "compare": {"mode": "value", "tolerance": 0.02,
                     "left": {"source": "shop", "query": "SELECT count(*) FROM shopify.orders"},
                     "right": {"source": "warehouse",
                               "query": "SELECT count(*) FROM sales.orders"}}},
        {"name": "members_email_valid", "source": "shop", "dataset": "members",
         "dimension": "accuracy",
         "query": "SELECT count(*) AS total, count(*) FILTER (WHERE email LIKE '%@%') AS valid FROM kajabi.members"},
        {"name": "refunds_complete", "source": "shop", "dataset": "refunds",
         "dimension": "completeness", "table": "shopify.refunds", "columns": ["reason"]},
        # faults: each must fail alone
        {"name": "broken_sql", "source": "shop", "dataset": "orders", "dimension": "accuracy",
         "table": "shopify.orders", "valid_when": "no_such_column > 0"},
        {"name": "source_down", "source": "down", "dataset": "orders",
         "dimension": "completeness", "table": "shopify.orders", "columns": ["email"]},
        {"name": "too_slow", "source": "shop", "dataset": "slow", "dimension": "accuracy",
         "query": "SELECT 1 AS total, 1 AS valid FROM pg_sleep(5)", "timeout": "500ms"},
        {"name": "statement_timeout", "source": "strict", "dataset": "slow",
         "dimension": "accuracy",
         "query": "SELECT 1 AS total, 1 AS valid FROM pg_sleep(5)"},
    ]  # fmt: skip
    return {
        "auth": {"disabled": True},
        "quality": {
            "sources": {
                "shop": {"dsn": shop},
                "warehouse": {"dsn": warehouse},
                "down": {"dsn": "postgresql://postgres@127.0.0.1:1/nothing"},
                "strict": {"dsn": shop, "statement_timeout": "300ms"},
            },
            "checks": [{**common, **c} for c in checks],
        },
    }


FAILING = {"broken_sql", "source_down", "too_slow", "statement_timeout"}


async def metrics(client: TestClient[Any, Any]) -> Samples:
    return samples_by_name(await (await client.get("/metrics")).text())


async def test_checks_score_known_defects_and_fail_alone(
    make_client: MakeClient,
    sources: tuple[str, str],
    db: asyncpg.Connection,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="exporter.features.leader")
    cfg = config(*sources)
    client = await make_client(cfg)
    names = {c["name"] for c in cfg["quality"]["checks"]}

    async def all_ran() -> bool:
        runs = (await metrics(client)).get("monitoring_quality_check_success", {})
        return {k[0] for k in runs} == names

    await eventually(all_ran, timeout=30)
    m = await metrics(client)
    assert m["monitoring_quality_check_success"] == {
        (n,): (0.0 if n in FAILING else 1.0) for n in names
    }
    assert set(m["monitoring_quality_check_duration_seconds"]) == {(n,) for n in names}
    # each check is a collector of its own: a failure shows as success 0, not as a score of 0
    collectors = m["monitoring_collector_success"]
    assert {k: v for k, v in collectors.items() if k[0].startswith("quality:")} == {
        (f"quality:{n}",): (0.0 if n in FAILING else 1.0) for n in names
    }

    # labels sorted by name: dataset, dimension, source
    assert m["monitoring_data_quality_score"] == {
        ("orders", "completeness", "shop"): 98.5,
        ("orders", "accuracy", "shop"): 99.4,  # broken_sql failed: not a 0 pulling this down
        ("orders", "freshness", "shop"): 100.0,
        ("sync_log", "freshness", "shop"): 0.0,
        ("orders", "consistency", "shop"): 98.875,
        ("members", "accuracy", "shop"): 90.0,
    }
    assert m["monitoring_data_quality_status"] == {
        ("orders", "completeness", "shop"): 1.0,
        ("orders", "accuracy", "shop"): 0.0,
        ("orders", "freshness", "shop"): 0.0,
        ("sync_log", "freshness", "shop"): 2.0,
        ("orders", "consistency", "shop"): 1.0,
        ("members", "accuracy", "shop"): 2.0,
    }

    rows = {
        r["check_name"]: r
        for r in await db.fetch("SELECT * FROM monitoring.data_quality_indicators")
    }
    assert set(rows) == names - FAILING  # failed checks store nothing
    email = rows["orders_email_complete"]
    assert (email["total_records"], email["valid_records"], email["score"]) == (1000, 985, 98.5)
    assert email["status"] == "warning"
    assert_json(email["issues"], [
        {"type": "missing_values", "column": "email", "count": 15},
        {"type": "sample_failing_keys", "column": "id", "keys": ["64", "128", "192"]},
    ])  # fmt: skip
    assert rows["orders_total_valid"]["valid_records"] == 994
    assert_json(rows["orders_total_valid"]["issues"],
                [{"type": "failed_rule", "rule": "total >= 0", "count": 6}])  # fmt: skip
    match = rows["orders_match_warehouse"]
    assert (match["total_records"], match["valid_records"]) == (1000, 985)
    assert_json(match["issues"], [
        {"type": "missing_in_right", "count": 10, "sample_keys": [991, 992, 993]},
        {"type": "values_differ", "count": 5, "sample_keys": [7, 207, 407]},
    ])  # fmt: skip
    stale = load(rows["sync_fresh"]["issues"])[0]
    assert stale["type"] == "stale"
    assert 7 * 3600 <= stale["age_seconds"] < 7 * 3600 + 60
    assert rows["sync_fresh"]["status"] == "critical"
    refunds = rows["refunds_complete"]
    assert refunds["score"] is None and refunds["status"] == "unknown"
    assert refunds["total_records"] == 0
    assert load(refunds["issues"])[0]["type"] == "no_records"
    assert rows["members_email_valid"]["check_name"] == "members_email_valid"

    failed = {
        getattr(r, "job", "").removeprefix("quality:")
        for r in caplog.records
        if r.message == "scheduled job failed"
    }
    assert failed == FAILING

    ov = await (await client.get("/api/v1/quality/overview")).json()
    (shop,) = ov["sources"]
    dims = {d["dimension"]: d["score"] for d in shop["dimensions"]}
    consistency = 98.875
    assert dims == pytest.approx(
        {"completeness": 98.5, "accuracy": (99.4 + 90) / 2, "freshness": 50.0,
         "consistency": consistency}
    )  # fmt: skip
    expected = (98.5 + (99.4 + 90) / 2 + 50 + consistency) / 4
    assert shop["score"] == pytest.approx(expected)
    assert ov["overall"]["score"] == pytest.approx(expected)
    # above a dimension the status is the worst part's: sync_log freshness is critical
    assert shop["status"] == "critical"
    assert ov["overall"]["status"] == "critical"


def load(raw: str) -> list[dict[str, Any]]:
    import json

    value: list[dict[str, Any]] = json.loads(raw)
    return value


def assert_json(raw: str, expected: list[dict[str, Any]]) -> None:
    assert load(raw) == expected


async def test_a_down_source_recovers_without_restart(
    make_client: MakeClient, sources: tuple[str, str]
) -> None:
    """Pools connect lazily: a source that was down at start scores once it is reachable."""
    from tests.support.proxy import TcpProxy

    proxy = TcpProxy.to_database(sources[0])
    await proxy.start()
    shop = proxy.url(sources[0])
    check = {"name": "c", "source": "shop", "dataset": "orders", "dimension": "completeness",
             "table": "shopify.orders", "columns": ["email"], "interval": "1s",
             "timeout": "2s"}  # fmt: skip
    cfg = {"auth": {"disabled": True},
           "quality": {"sources": {"shop": {"dsn": shop}}, "checks": [check]}}  # fmt: skip
    try:
        client = await make_client(cfg)

        async def success() -> float | None:
            return (await metrics(client)).get("monitoring_quality_check_success", {}).get(("c",))

        async def failed() -> bool:
            return await success() == 0.0

        await eventually(failed, timeout=15)
        assert "monitoring_data_quality_score" not in await metrics(client)
        proxy.enable()

        async def scored() -> bool:
            return await success() == 1.0

        await eventually(scored, timeout=15)
        score = (await metrics(client))["monitoring_data_quality_score"]
        assert score == {("orders", "completeness", "shop"): 98.5}
    finally:
        await proxy.close()
