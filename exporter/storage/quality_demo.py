"""The demo's data sources: a ``demo_sources`` schema with deliberate defects.

Seeding replaces the rows on every start (timestamps are relative to now, so "fresh" stays
fresh and "stale" stays stale), under an advisory lock so replicas do not race.
"""

from __future__ import annotations

import asyncpg

DEMO_SCHEMA = "demo_sources"
_LOCK_KEY = 0x71756C64656D6F

DDL = """
CREATE SCHEMA IF NOT EXISTS demo_sources;
CREATE TABLE IF NOT EXISTS demo_sources.shopify_orders (
    id integer PRIMARY KEY, email text, customer_name text, total numeric(10, 2),
    currency text, created_at timestamptz, updated_at timestamptz);
CREATE TABLE IF NOT EXISTS demo_sources.warehouse_orders (
    order_id integer PRIMARY KEY, total numeric(10, 2), loaded_at timestamptz);
CREATE TABLE IF NOT EXISTS demo_sources.kajabi_members (
    id integer PRIMARY KEY, email text, name text, joined_at timestamptz, synced_at timestamptz);
CREATE TABLE IF NOT EXISTS demo_sources.google_ads_campaign_stats (
    day date, campaign_id integer, impressions integer, clicks integer, cost numeric(10, 2),
    synced_at timestamptz, PRIMARY KEY (day, campaign_id));
CREATE TABLE IF NOT EXISTS demo_sources.meta_ads_insights (
    day date, ad_id integer, spend numeric(10, 2), impressions integer, reach integer,
    synced_at timestamptz, PRIMARY KEY (day, ad_id));
"""

# Defects, by design (the demo checks and the tests count on these numbers):
# - shopify_orders: 1000 rows; 15 without email (id % 64 = 0); 4 negative totals (id % 250 = 0);
#   8 with currency 'eur' instead of 'EUR' (id % 125 = 0); updated within the last minutes.
# - warehouse_orders: the copy misses orders 991-1000 and has 10 wrong totals (id % 100 = 3).
# - kajabi_members: 400 rows; 10 without email (id % 40 = 0), 8 without '@' (id % 50 = 7);
#   last synced 5 hours ago.
# - google_ads_campaign_stats: 240 rows; 6 with more clicks than impressions (row % 40 = 0);
#   last synced 30 hours ago.
# - meta_ads_insights: 300 rows; 12 without spend (row % 25 = 0), 5 with reach above
#   impressions (row % 60 = 0); synced 20 minutes ago.
DATA = """
TRUNCATE demo_sources.shopify_orders, demo_sources.warehouse_orders,
         demo_sources.kajabi_members, demo_sources.google_ads_campaign_stats,
         demo_sources.meta_ads_insights;
INSERT INTO demo_sources.shopify_orders
SELECT id,
       CASE WHEN id % 64 = 0 THEN NULL ELSE 'customer' || id || '@example.com' END,
       'Customer ' || id,
       CASE WHEN id % 250 = 0 THEN -((id * 37) % 500 + 10.99) ELSE (id * 37) % 500 + 10.99 END,
       CASE WHEN id % 125 = 0 THEN 'eur' WHEN id % 3 = 0 THEN 'USD' ELSE 'EUR' END,
       now() - (1000 - id) * interval '2 minutes' - interval '5 minutes',
       now() - (1000 - id) * interval '30 seconds' - interval '1 minute'
FROM generate_series(1, 1000) AS id;
INSERT INTO demo_sources.warehouse_orders
SELECT id, CASE WHEN id % 100 = 3 THEN total + 1 ELSE total END, now()
FROM demo_sources.shopify_orders AS o(id, email, customer_name, total)
WHERE id <= 990;
INSERT INTO demo_sources.kajabi_members
SELECT id,
       CASE WHEN id % 40 = 0 THEN NULL
            WHEN id % 50 = 7 THEN 'member' || id || '.example.com'
            ELSE 'member' || id || '@example.com' END,
       'Member ' || id,
       now() - id * interval '1 day',
       now() - interval '5 hours'
FROM generate_series(1, 400) AS id;
INSERT INTO demo_sources.google_ads_campaign_stats
SELECT current_date - (n / 8), n % 8 + 1, 1000 + (n * 13) % 900,
       CASE WHEN n % 40 = 0 THEN 2500 ELSE 20 + (n * 7) % 80 END,
       ((n * 11) % 300 + 5)::numeric(10, 2),
       now() - interval '30 hours'
FROM generate_series(0, 239) AS n;
INSERT INTO demo_sources.meta_ads_insights
SELECT current_date - (n / 10), n % 10 + 1,
       CASE WHEN n % 25 = 0 THEN NULL ELSE ((n * 17) % 200 + 3)::numeric(10, 2) END,
       5000 + (n * 29) % 4000,
       CASE WHEN n % 60 = 0 THEN 12000 ELSE 1000 + (n * 23) % 3000 END,
       now() - interval '20 minutes'
FROM generate_series(0, 299) AS n;
"""


async def seed(conn: asyncpg.Connection) -> None:
    """Create (or refresh) the demo source tables and their rows, in one transaction."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        await conn.execute(DDL)
        await conn.execute(DATA)
