"""Demo performance logs: a day of the seed's operations (API calls, syncs, reports)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from exporter.storage.performance_logs import Rows

OPERATIONS = [
    ("api_call", "GET /api/dashboard", 40.0),
    ("api_call", "POST /api/orders", 120.0),
    ("data_sync", "shopify_orders", 8000.0),
    ("data_sync", "kajabi_members", 3000.0),
    ("report_generation", "daily_revenue", 25000.0),
]


def demo_rows(now: datetime, count: int = 2000, seed: int = 5) -> Rows:
    """``count`` records spread over the day before ``now``, about 4% failing."""
    rng = random.Random(seed)
    rows = Rows()
    for i in range(count):
        op, name, typical = OPERATIONS[i % len(OPERATIONS)]
        roll = rng.random()
        rows.operation_type.append(op)
        rows.operation_name.append(name)
        rows.duration_ms.append(rng.lognormvariate(0, 0.6) * typical)
        rows.memory_usage_bytes.append(rng.randrange(20, 400) << 20)
        rows.cpu_usage_percent.append(round(rng.uniform(1, 90), 1))
        rows.status.append("timeout" if roll < 0.01 else "error" if roll < 0.04 else "success")
        rows.error_message.append("upstream returned 502" if roll < 0.04 else None)
        rows.user_id.append(f"user_{rng.randrange(1, 40)}")
        rows.request_details.append('{"demo": true}')
        rows.recorded_at.append(now - timedelta(seconds=rng.uniform(0, 86400)))
    return rows
