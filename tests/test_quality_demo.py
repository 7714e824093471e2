"""The demo: seeded demo_sources with planted defects, and checks that find them."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec

from exporter.demo.quality import DEMO_CHECKS, with_demo_checks
from exporter.storage.quality_demo import seed
from tests.conftest import MakeClient, eventually, make_config
from tests.support.metrics import Samples, samples_by_name


async def test_demo_checks_find_the_planted_defects(
    make_client: MakeClient, database_url: str
) -> None:
    base = msgspec.structs.replace(make_config({"auth": {"disabled": True}}), demo=True)
    # the demo creates and fills its own demo_sources schema: not a writer-only login's job
    client = await make_client(with_demo_checks(base, database_url), dsn=database_url)

    async def metrics() -> Samples:
        return samples_by_name(await (await client.get("/metrics")).text())

    async def all_ran() -> bool:
        return len((await metrics()).get("monitoring_quality_check_success", {})) == len(
            DEMO_CHECKS
        )

    await eventually(all_ran, timeout=30)
    m = await metrics()
    assert set(m["monitoring_quality_check_success"].values()) == {1.0}
    score = m["monitoring_data_quality_score"]
    status = m["monitoring_data_quality_status"]
    # (dataset, dimension, source)
    assert score[("orders", "completeness", "shopify")] == 98.5  # 15 orders without email
    assert score[("orders", "accuracy", "shopify")] == (99.6 + 99.2) / 2
    assert score[("orders", "freshness", "shopify")] == 100.0
    assert score[("orders", "consistency", "shopify")] == (98.0 + 99.0) / 2
    assert score[("members", "completeness", "kajabi")] == 97.5
    assert score[("members", "accuracy", "kajabi")] < 100
    assert 0 < score[("members", "freshness", "kajabi")] < 100  # synced 5 hours ago
    assert status[("members", "freshness", "kajabi")] == 1.0
    assert score[("campaign_stats", "freshness", "google_ads")] == 0.0
    assert status[("campaign_stats", "freshness", "google_ads")] == 2.0
    assert score[("campaign_stats", "accuracy", "google_ads")] == 97.5
    assert score[("insights", "completeness", "meta_ads")] == 96.0
    assert score[("insights", "freshness", "meta_ads")] == 100.0

    ov = await (await client.get("/api/v1/quality/overview")).json()
    assert [s["source"] for s in ov["sources"]] == ["google_ads", "kajabi", "meta_ads", "shopify"]
    assert all(s["score"] < 100 for s in ov["sources"])
    assert ov["overall"]["score"] < 100


async def test_demo_seeding_is_idempotent(db: asyncpg.Connection) -> None:
    await seed(db)
    first = await db.fetchval("SELECT count(*) FROM demo_sources.shopify_orders")
    await seed(db)
    assert await db.fetchval("SELECT count(*) FROM demo_sources.shopify_orders") == first == 1000
    counts = await db.fetchrow(
        "SELECT (SELECT count(*) FROM demo_sources.warehouse_orders) AS wh,"
        " (SELECT count(*) FROM demo_sources.kajabi_members) AS km"
    )
    assert dict(counts) == {"wh": 990, "km": 400}


def test_demo_config_keeps_the_operators_checks() -> None:
    cfg: dict[str, Any] = {
        "quality": {
            "sources": {"mine": {"dsn": "postgresql://x/y"}},
            "checks": [{"name": "mine", "source": "mine", "dataset": "d",
                        "dimension": "accuracy", "query": "SELECT 1 AS total, 1 AS valid"}],
        }
    }  # fmt: skip
    out = with_demo_checks(make_config(cfg), "postgresql://demo/db")
    assert out.quality.checks[0].name == "mine"
    assert len(out.quality.checks) == 1 + len(DEMO_CHECKS)
    assert out.quality.sources["shopify"].dsn == "postgresql://demo/db"
