"""Demo data sources and checks for the quality feature.

Four business sources (Shopify, Kajabi, Google Ads, Meta Ads) and a warehouse copy, all
tables of the ``demo_sources`` schema in the service's own database, each reached through
its own named source so the overview shows four sources with real, imperfect scores.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec

from exporter.config import Config
from exporter.config.quality import Quality
from exporter.config.types import dec_hook
from exporter.storage import Database
from exporter.storage.quality_demo import seed

log = logging.getLogger(__name__)

_T = "demo_sources."
_EVERY = {"interval": "1m", "timeout": "10s"}

DEMO_CHECKS: list[dict[str, Any]] = [
    {"name": "demo_orders_email_complete", "source": "shopify", "dataset": "orders",
     "dimension": "completeness", "table": _T + "shopify_orders", "columns": ["email"],
     "key_column": "id"},
    {"name": "demo_orders_total_valid", "source": "shopify", "dataset": "orders",
     "dimension": "accuracy", "table": _T + "shopify_orders", "valid_when": "total >= 0",
     "key_column": "id"},
    {"name": "demo_orders_currency_valid", "source": "shopify", "dataset": "orders",
     "dimension": "accuracy", "table": _T + "shopify_orders", "column": "currency",
     "allowed": ["EUR", "USD"], "key_column": "id"},
    {"name": "demo_orders_fresh", "source": "shopify", "dataset": "orders",
     "dimension": "freshness", "table": _T + "shopify_orders", "timestamp_column": "updated_at",
     "warn_after": "1h", "error_after": "6h"},
    {"name": "demo_orders_match_warehouse", "source": "shopify", "dataset": "orders",
     "dimension": "consistency",
     "compare": {"left": {"source": "shopify",
                          "query": f"SELECT id, total FROM {_T}shopify_orders"},
                 "right": {"source": "warehouse",
                           "query": f"SELECT order_id, total FROM {_T}warehouse_orders"}}},
    {"name": "demo_orders_count_match_warehouse", "source": "shopify", "dataset": "orders",
     "dimension": "consistency",
     "compare": {"mode": "value", "tolerance": 0.005,
                 "left": {"source": "shopify",
                          "query": f"SELECT count(*) FROM {_T}shopify_orders"},
                 "right": {"source": "warehouse",
                           "query": f"SELECT count(*) FROM {_T}warehouse_orders"}}},
    {"name": "demo_members_email_complete", "source": "kajabi", "dataset": "members",
     "dimension": "completeness", "table": _T + "kajabi_members", "columns": ["email", "name"],
     "key_column": "id"},
    {"name": "demo_members_email_valid", "source": "kajabi", "dataset": "members",
     "dimension": "accuracy",
     "query": "SELECT count(*) AS total, count(*) FILTER (WHERE email LIKE '%@%') AS valid"
              f" FROM {_T}kajabi_members WHERE email IS NOT NULL"},
    {"name": "demo_members_fresh", "source": "kajabi", "dataset": "members",
     "dimension": "freshness", "table": _T + "kajabi_members", "timestamp_column": "synced_at",
     "warn_after": "1h", "error_after": "6h"},
    {"name": "demo_campaigns_clicks_valid", "source": "google_ads", "dataset": "campaign_stats",
     "dimension": "accuracy", "table": _T + "google_ads_campaign_stats",
     "valid_when": "clicks <= impressions", "key_column": "campaign_id"},
    {"name": "demo_campaigns_fresh", "source": "google_ads", "dataset": "campaign_stats",
     "dimension": "freshness", "table": _T + "google_ads_campaign_stats",
     "timestamp_column": "synced_at", "warn_after": "6h", "error_after": "24h"},
    {"name": "demo_insights_spend_complete", "source": "meta_ads", "dataset": "insights",
     "dimension": "completeness", "table": _T + "meta_ads_insights", "columns": ["spend"]},
    {"name": "demo_insights_reach_valid", "source": "meta_ads", "dataset": "insights",
     "dimension": "accuracy", "table": _T + "meta_ads_insights",
     "valid_when": "reach <= impressions"},
    {"name": "demo_insights_fresh", "source": "meta_ads", "dataset": "insights",
     "dimension": "freshness", "table": _T + "meta_ads_insights", "timestamp_column": "synced_at",
     "warn_after": "2h", "error_after": "12h"},
]  # fmt: skip

DEMO_SOURCES = ("shopify", "kajabi", "google_ads", "meta_ads", "warehouse")


def with_demo_checks(config: Config, dsn: str) -> Config:
    """Add sources over the service's own database and checks over its demo_sources schema."""
    existing = msgspec.to_builtins(config.quality, enc_hook=_duration)
    sources = {name: {"dsn": dsn, "pool_size": 1} for name in DEMO_SOURCES}
    for name, source in existing.get("sources", {}).items():
        # the secret is already resolved into dsn; naming its origin again would be an error
        sources[name] = {**source, "dsn_env": None, "dsn_file": None}
    taken = {c["name"] for c in existing.get("checks", [])}
    checks = existing.get("checks", []) + [
        {**_EVERY, **c} for c in DEMO_CHECKS if c["name"] not in taken
    ]
    quality = msgspec.convert({"sources": sources, "checks": checks}, Quality, dec_hook=dec_hook)
    return msgspec.structs.replace(config, quality=quality)


def _duration(obj: Any) -> Any:
    seconds = getattr(obj, "seconds", None)
    if seconds is not None:
        return seconds
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


async def seed_demo(db: Database) -> None:
    """Create or refresh the demo_sources tables; a failure is logged (the checks then fail)."""
    try:
        async with db.connection() as conn:
            await seed(conn)
    except Exception as exc:
        log.warning("demo data sources not seeded", extra={"error": f"{exc}"})
        return
    log.info("demo data sources seeded", extra={"schema": "demo_sources"})
