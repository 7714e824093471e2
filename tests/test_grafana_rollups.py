"""The performance dashboard's SQL panels read the rollups, never the raw records: their plans
(EXPLAIN, as Grafana's reader role sends them) scan no partition of system_performance_logs,
and their figures agree with the raw records."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.test_shipped_grafana import GRAFANA, panels

BOARD = json.loads((GRAFANA / "dashboards" / "performance.json").read_text(encoding="utf-8"))
SQL_PANELS = [
    (panel["title"], target["rawSql"])
    for panel in panels(BOARD)
    for target in panel.get("targets", [])
    if "rawSql" in target
]
TYPES = ["api_call", "data_sync"]


def as_grafana_sends(sql: str, since: datetime, until: datetime) -> str:
    """The panel's SQL with Grafana's macros and the variable filled in."""
    since_s, until_s = f"'{since.isoformat()}'", f"'{until.isoformat()}'"
    sql = re.sub(r"\$__timeFilter\((\w+)\)", rf"\1 BETWEEN {since_s} AND {until_s}", sql)
    sql = sql.replace("$__timeFrom()", since_s).replace("$__timeTo()", until_s)
    return sql.replace("$operation_type", ", ".join(f"'{t}'" for t in TYPES))


def relations(plan: dict[str, Any]) -> Iterator[str]:
    """Every relation a plan node (or one below it) scans."""
    if "Relation Name" in plan:
        yield plan["Relation Name"]
    for child in plan.get("Plans", []):
        yield from relations(child)


@pytest.fixture
async def loaded(db: asyncpg.Connection) -> tuple[datetime, datetime]:
    """A day of records (so every partition of the window exists and holds rows)."""
    now = datetime.now(UTC)
    await db.execute(
        "INSERT INTO monitoring.system_performance_logs (operation_type, operation_name,"
        " duration_ms, status, recorded_at)"
        " SELECT CASE WHEN i % 3 = 0 THEN 'data_sync' ELSE 'api_call' END, 'op' || (i % 4),"
        "        (i % 997) + 0.5, CASE WHEN i % 10 = 0 THEN 'error' ELSE 'success' END,"
        "        $1::timestamptz - i * interval '17 seconds'"
        " FROM generate_series(1, 5000) AS i",
        now,
    )
    await db.execute("ANALYZE monitoring.system_performance_logs")
    return now - timedelta(hours=24), now


def test_the_dashboard_has_sql_panels() -> None:
    assert {title for title, _ in SQL_PANELS} == {
        "Operations over the range",
        "Failures by operation",
    }


@pytest.mark.parametrize(("title", "sql"), SQL_PANELS, ids=[t for t, _ in SQL_PANELS])
async def test_each_sql_panel_reads_only_the_rollups(
    db: asyncpg.Connection, loaded: tuple[datetime, datetime], title: str, sql: str
) -> None:
    query = as_grafana_sends(sql, *loaded)
    async with db.transaction():
        await db.execute("SET LOCAL ROLE monitoring_reader")
        [plan] = json.loads(await db.fetchval(f"EXPLAIN (FORMAT JSON) {query}"))
        rows = await db.fetch(query)
    read = set(relations(plan["Plan"]))
    assert read & {"performance_log_rollups_minute", "performance_log_rollups_hour"}, read
    assert not [r for r in read if r.startswith("system_performance_logs")], read
    assert rows, title


async def test_the_panels_agree_with_the_raw_records(
    db: asyncpg.Connection, loaded: tuple[datetime, datetime]
) -> None:
    since, until = loaded
    # the panels count whole minutes: the raw side over the same minutes
    first = since.replace(second=0, microsecond=0) + timedelta(minutes=1)
    last = until.replace(second=0, microsecond=0)
    exact = {
        (r["operation_type"], r["operation_name"]): r
        for r in await db.fetch(
            "SELECT operation_type, operation_name, count(*) AS n,"
            " count(*) FILTER (WHERE status = 'error') AS errors,"
            " percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99"
            " FROM monitoring.system_performance_logs"
            " WHERE recorded_at >= $1 AND recorded_at < $2 GROUP BY 1, 2",
            first,
            last,
        )
    }
    operations = dict(SQL_PANELS)["Operations over the range"]
    shown = await db.fetch(as_grafana_sends(operations, since, until))
    assert {(r["operation_type"], r["operation_name"]) for r in shown} == set(exact)
    for row in shown:
        want = exact[(row["operation_type"], row["operation_name"])]
        assert row["calls"] == want["n"]
        assert abs(row["p99_ms"] - want["p99"]) <= 0.01 * want["p99"]
    failures = dict(SQL_PANELS)["Failures by operation"]
    shown = await db.fetch(as_grafana_sends(failures, since, until))
    assert {(r["operation_type"], r["operation_name"], r["failures"]) for r in shown} == {
        (t, name, r["errors"]) for (t, name), r in exact.items() if r["errors"]
    }
